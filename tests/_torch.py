"""Runs a pyopt optimizer beside its torch.optim twin in float64 and compares params and every state buffer after
each step: the references follow PyTorch's formulas so that a run can move between the two (DESIGN.md 5)."""
import numpy as np
import pytest
from _compare import assert_close
from _families import FAMILIES
from _tolerances import REFERENCE_VS_TORCH, tolerance

torch = pytest.importorskip("torch")

TORCH_SIZES = [1, 7, 1023, 0]  # the empty tensor last: PyTorch #100701


def assert_same_state(ours, theirs, torch_params, step):
    """Every buffer torch keeps, with the same name, value and step count; none that torch lacks."""
    rtol, atol = tolerance(REFERENCE_VS_TORCH, np.float64)
    saved = ours.state_dict()["state"]
    for k, tp in enumerate(torch_params):
        expected = {key: v for key, v in theirs.state[tp].items() if v is not None}
        entry = saved.get(k, {})
        assert set(entry) == set(expected), f"step {step} state[{k}] keys {sorted(entry)} != {sorted(expected)}"
        for key, value in expected.items():
            if key == "step":
                assert entry[key] == float(value), f"step {step} state[{k}]['step'] {entry[key]} != {value}"
            else:
                assert_close(entry[key], value.numpy(), rtol, atol, f"step {step} state[{k}][{key!r}]")


def run_against_torch(family, kwargs, rng, steps=7, sizes=TORCH_SIZES, backend="numpy", between_steps=None):
    """``steps`` steps of pyopt's ``family`` and of ``torch.optim`` with the same kwargs, float64, same grads.

    ``between_steps(step, ours, theirs)`` may change both optimizers (e.g. a group's hyper-parameters)."""
    fam = FAMILIES[family]
    params = [rng.standard_normal(n) for n in sizes]
    ours = fam.cls([p.copy() for p in params], backend=backend, **kwargs)
    torch_params = [torch.tensor(p) for p in params]
    # foreach=False: torch's single-tensor path, the one the references transcribe
    theirs = getattr(torch.optim, fam.torch_name)(torch_params, foreach=False, **kwargs)
    rtol, atol = tolerance(REFERENCE_VS_TORCH, np.float64)
    for step in range(1, steps + 1):
        if between_steps is not None:
            between_steps(step, ours, theirs)
        grads = [rng.standard_normal(p.shape) for p in params]
        ours.step(grads)
        for tp, g in zip(torch_params, grads):
            tp.grad = torch.from_numpy(g.copy())
        theirs.step()
        for k, (p, tp) in enumerate(zip(ours.param_groups[0]["params"], torch_params)):
            assert_close(p, tp.numpy(), rtol, atol, f"step {step} params[{k}]")
        assert_same_state(ours, theirs, torch_params, step)
    return ours, theirs

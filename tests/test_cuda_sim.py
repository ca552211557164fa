"""The ``cuda`` backend under numba's CUDA simulator, against the references: every family's kernel, the optimizer
and functional APIs on device arrays, per-tensor values, grid-stride over many pieces, guard bands, and
bench/gpu_check.py at toy sizes.

Run in its own process (the simulator must be switched on before numba is imported, and ``compile_ptx`` fails
under it)::

    NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim

The simulator runs about 5,000 GPU threads a second, so sizes stay at a few thousand elements, odd ones included.
It runs the rules as Python on NumPy scalars of the arrays' dtype, operation for operation, so its results are
the references' bits; on a GPU the kernels compile without FMA contraction to the same effect
(bench/gpu_check.py checks that on the device).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.cudasim

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip(reason="simulator tests: run `NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim` in a process of their own",
                allow_module_level=True)

from _compare import assert_bitwise  # noqa: E402
from _families import FAMILIES  # noqa: E402
from numba import cuda  # noqa: E402
from test_numba import (DEFAULTS, FAMILY_CASES, copy_arrays, make_state, per_tensor_values,  # noqa: E402
                        reference_extra, used_roles)

import pyopt  # noqa: E402
from pyopt import backends  # noqa: E402
from pyopt.arrays import TensorList  # noqa: E402
from pyopt.kernels import _launch  # noqa: E402

SIZES = [1, 7, 33, 1023, 2049, 0, 127]  # 3267 elements; the empty tensor not last on purpose, and last below
SIM_CASES = [(family, k) for family, case in FAMILY_CASES.items() for k in range(len(case[2]))]
OPT_CASES = [(name, k) for name, fam in FAMILIES.items() for k in range(len(fam.configs))]


def to_device(arrays):
    return {role: [cuda.to_device(a) for a in values] for role, values in arrays.items()}


def to_host(arrays):
    return {role: [a.copy_to_host() for a in values] for role, values in arrays.items()}


def run_cuda(family, hparams, device_arrays, grads, per_tensor):
    roles = used_roles(family, hparams)
    tensors = TensorList({"param": device_arrays["param"], "grad": grads, **{r: device_arrays[r] for r in roles}})
    assert tensors.on_device
    backends.select(family, "cuda", on_device=True)[1](tensors, hparams, per_tensor)


def test_cuda_backend_runs_on_the_simulator():
    assert backends.available()["cuda"] is None and backends.simulator()
    assert _launch.simulator()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family,config", SIM_CASES)
def test_kernel_is_bitwise_the_reference(family, config, dtype, rng):
    ref_fn, all_roles, configs = FAMILY_CASES[family]
    hparams = dict(DEFAULTS[family], **configs[config])
    roles = used_roles(family, hparams)
    host = {"param": [rng.standard_normal(n).astype(dtype) for n in SIZES],
            **make_state(family, roles, SIZES, dtype, rng)}
    expected = copy_arrays(host)
    device = to_device(host)
    for step in range(1, 3):
        grads = [rng.standard_normal(n).astype(dtype) for n in SIZES]
        per_tensor = per_tensor_values(family, step, len(SIZES))
        run_cuda(family, hparams, device, [cuda.to_device(g) for g in grads], per_tensor)
        for k in range(len(SIZES)):
            state = [expected[r][k] if r in roles else None for r in all_roles]
            ref_fn(expected["param"][k], grads[k], *state, **hparams, **reference_extra(family, per_tensor, k))
    for role, values in to_host(device).items():
        for k, (a, b) in enumerate(zip(values, expected[role])):
            assert_bitwise(a, b, f"{role}[{k}]")


@pytest.mark.parametrize("family", ["adam", "adagrad", "sgd"])
def test_per_tensor_values_that_differ_use_the_device_table(family, rng):
    """Tensors at different steps (or SGD buffers filled for some tensors only) within one launch."""
    ref_fn, all_roles, configs = FAMILY_CASES[family]
    hparams = dict(DEFAULTS[family], **configs[-1])
    roles = used_roles(family, hparams)
    sizes = [5, 300, 3]
    host = {"param": [rng.standard_normal(n).astype(np.float32) for n in sizes],
            **make_state(family, roles, sizes, np.float32, rng)}
    expected = copy_arrays(host)
    device = to_device(host)
    per_tensor_steps = ([{"first_step": np.array([True, False, True])}, {"first_step": np.array([False] * 3)}]
                        if family == "sgd" else
                        [{"step": np.array([3, 1, 7])}, {"step": np.array([4, 4, 4])}, {"step": np.array([5, 2, 9])}])
    for per_tensor in per_tensor_steps:
        grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        run_cuda(family, hparams, device, [cuda.to_device(g) for g in grads], per_tensor)
        for k in range(len(sizes)):
            state = [expected[r][k] if r in roles else None for r in all_roles]
            ref_fn(expected["param"][k], grads[k], *state, **hparams, **reference_extra(family, per_tensor, k))
    for role, values in to_host(device).items():
        for k, (a, b) in enumerate(zip(values, expected[role])):
            assert_bitwise(a, b, f"{role}[{k}]")


def test_many_pieces_and_a_grid_smaller_than_the_pieces(monkeypatch, rng):
    """Block-stride over pieces and tensors split into many pieces: the paths a large tensor takes on a GPU."""
    monkeypatch.setattr(_launch, "GPU_PIECE", 64)
    monkeypatch.setattr(_launch, "MAX_BLOCKS", 3)
    sizes = [200, 1, 0, 129, 64]
    hparams = dict(DEFAULTS["adam"], amsgrad=True, weight_decay=0.1)
    host = {"param": [rng.standard_normal(n) for n in sizes],
            **make_state("adam", used_roles("adam", hparams), sizes, np.float64, rng)}
    expected = copy_arrays(host)
    device = to_device(host)
    grads = [rng.standard_normal(n) for n in sizes]
    run_cuda("adam", hparams, device, [cuda.to_device(g) for g in grads], {"step": np.full(len(sizes), 1)})
    for k in range(len(sizes)):
        pyopt.reference.adam_step(expected["param"][k], grads[k], expected["exp_avg"][k],
                                  expected["exp_avg_sq"][k], expected["max_exp_avg_sq"][k], step=1, **hparams)
    for role, values in to_host(device).items():
        for k, (a, b) in enumerate(zip(values, expected[role])):
            assert_bitwise(a, b, f"{role}[{k}]")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family,config", OPT_CASES)
def test_optimizer_on_device_arrays_matches_the_numpy_optimizer(family, config, dtype, rng):
    """The table's optimizers on device arrays: routed to cuda, state created on the device, updated in place,
    bitwise the NumPy reference optimizer over several steps."""
    fam = FAMILIES[family]
    kwargs = fam.configs[config]
    params = [rng.standard_normal(n).astype(dtype) for n in [7, 1023, 0]]
    device_params = [cuda.to_device(p) for p in params]
    opt = fam.cls(device_params, **kwargs)
    ref = fam.cls([p.copy() for p in params], backend="numpy", **kwargs)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        opt.step([cuda.to_device(g) for g in grads])
        ref.step(grads)
    assert all(part[2] == "cuda" for plan in opt._plans.values() for part in plan.parts)
    for k, (a, b) in enumerate(zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"])):
        assert a is device_params[k]  # in place: the caller's device arrays
        assert_bitwise(a.copy_to_host(), b, f"params[{k}]")
    for index, buffers in opt.state.items():
        for role, buf in buffers.items():
            assert type(buf).__name__ == "FakeCUDAArray", f"state[{index}][{role}] is not on the device"
            assert_bitwise(buf.copy_to_host(), ref.state[index][role], f"state[{index}][{role}]")


def test_state_dict_round_trip_on_device(rng):
    params = [rng.standard_normal(n).astype(np.float32) for n in (5, 300)]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(6)]
    straight = pyopt.optim.AdamW([cuda.to_device(p) for p in params], amsgrad=True)
    for g in grads:
        straight.step([cuda.to_device(x) for x in g])
    first = pyopt.optim.AdamW([cuda.to_device(p) for p in params], amsgrad=True)
    for g in grads[:3]:
        first.step([cuda.to_device(x) for x in g])
    resumed = pyopt.optim.AdamW([cuda.to_device(p.copy_to_host()) for p in first.param_groups[0]["params"]],
                                amsgrad=True)
    resumed.load_state_dict(first.state_dict())
    assert type(resumed.state[0]["exp_avg"]).__name__ == "FakeCUDAArray"
    for g in grads[3:]:
        resumed.step([cuda.to_device(x) for x in g])
    for a, b in zip(resumed.param_groups[0]["params"], straight.param_groups[0]["params"]):
        assert_bitwise(a.copy_to_host(), b.copy_to_host(), "resumed params")


def test_functional_step_on_device_views_keeps_guard_bands(rng):
    """Device arrays that are views at an odd offset inside NaN-filled buffers: margins untouched, result equal to
    the reference (the pointer table carries the views' own addresses)."""
    n, pad = 301, 5
    buffers = {role: cuda.to_device(np.full(n + 2 * pad + 1, np.nan, np.float32))
               for role in ("param", "grad", "exp_avg", "exp_avg_sq")}
    values = {"param": rng.standard_normal(n).astype(np.float32), "grad": rng.standard_normal(n).astype(np.float32),
              "exp_avg": np.zeros(n, np.float32), "exp_avg_sq": np.zeros(n, np.float32)}
    views = {}
    for role, buf in buffers.items():
        views[role] = buf[pad + 1:pad + 1 + n]
        views[role].copy_to_device(values[role])
    expected = {role: v.copy() for role, v in values.items()}
    pyopt.functional.adam_step(views["param"], views["grad"], views["exp_avg"], views["exp_avg_sq"], step=1,
                               weight_decay=0.1)
    pyopt.reference.adam_step(expected["param"], expected["grad"], expected["exp_avg"], expected["exp_avg_sq"],
                              step=1, weight_decay=0.1)
    for role, buf in buffers.items():
        host = buf.copy_to_host()
        assert np.isnan(host[:pad + 1]).all() and np.isnan(host[pad + 1 + n:]).all(), role
        assert_bitwise(host[pad + 1:pad + 1 + n], expected[role], role)


def test_host_backend_refused_for_device_arrays_before_any_write(rng):
    p = cuda.to_device(np.ones(9, np.float32))
    with pytest.raises(ValueError, match="CUDA device arrays"):
        pyopt.optim.Adam([p], backend="numba").step([cuda.to_device(np.ones(9, np.float32))])
    assert (p.copy_to_host() == 1).all()
    with pytest.raises(ValueError, match="is on cpu"):
        pyopt.optim.Adam([p]).step([np.ones(9, np.float32)])


def test_gpu_check_runs_under_the_simulator(tmp_path):
    """bench/gpu_check.py at toy sizes, so the script a GPU run depends on is not dead code."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "gpu_check.py")
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, script, "--sim", "--json", str(out)], capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "verify" in result.stdout and out.exists()

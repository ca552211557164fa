"""SGD-specific tests: identities of the rule, the first momentum step (PyTorch's clone), validation, and the
float64 reference against torch.optim.SGD."""
import re

import numpy as np
import pytest
from _compare import assert_bitwise
from _families import FAMILIES, draw
from _torch import run_against_torch, torch

import pyopt
from pyopt.functional import sgd_step

CONFIGS = FAMILIES["sgd"].configs


def test_momentum_switched_on_later_starts_from_a_clone_as_in_torch(rng):
    """torch creates the buffer on the first step that has momentum; earlier plain steps leave no state."""
    def switch(step, ours, theirs):
        if step == 3:
            for opt in (ours, theirs):
                opt.param_groups[0].update(momentum=0.9, nesterov=True)

    ours, _ = run_against_torch("sgd", dict(lr=0.1), rng, steps=6, between_steps=switch)
    assert set(ours.state) == {0, 1, 2, 3}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_momentum_zero_is_plain_sgd(dtype, backend, rng):
    """With momentum 0, dampening is unused and no state is kept: p <- p + (-lr) g, bitwise."""
    params, lr = draw(rng, dtype), 0.03
    opt = pyopt.optim.SGD([p.copy() for p in params], lr=lr, momentum=0, dampening=0.7, backend=backend)
    for _ in range(3):
        grads = draw(rng, dtype)
        opt.step(grads)
        params = [p + dtype(-lr) * g for p, g in zip(params, grads)]
    for k, (a, b) in enumerate(zip(opt.param_groups[0]["params"], params)):
        assert_bitwise(a, b, f"params[{k}]")
    assert opt.state == {} and opt.state_dict()["state"] == {}


@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_maximize_is_minimize_of_the_negated_gradient(config, backend, rng):
    kwargs = dict(CONFIGS[config], maximize=False)
    params = draw(rng)
    up = pyopt.optim.SGD([p.copy() for p in params], backend=backend, **dict(kwargs, maximize=True))
    down = pyopt.optim.SGD([p.copy() for p in params], backend=backend, **kwargs)
    for _ in range(4):
        grads = draw(rng)
        up.step(grads)
        down.step([-g for g in grads])
    for k, (a, b) in enumerate(zip(up.param_groups[0]["params"], down.param_groups[0]["params"])):
        assert_bitwise(a, b, f"params[{k}]")
    for index, buffers in up.state.items():
        assert_bitwise(buffers["momentum_buffer"], down.state[index]["momentum_buffer"], f"state[{index}]")


def test_first_momentum_step_is_undamped_and_buffer_is_the_gradient(backend, rng):
    params = draw(rng)
    opt = pyopt.optim.SGD([p.copy() for p in params], lr=0.5, momentum=0.9, dampening=0.5, weight_decay=0.0,
                          backend=backend)
    grads = draw(rng)
    opt.step(grads)
    for k, (p, g) in enumerate(zip(params, grads)):
        assert_bitwise(opt.state[k]["momentum_buffer"], g, f"buffer[{k}]")
        assert_bitwise(opt.param_groups[0]["params"][k], p + np.float32(-0.5) * g, f"params[{k}]")


def test_functional_first_step_flags_per_tensor(backend, rng):
    """first_step is per tensor: one call with [True, False] equals two calls, and equals the optimizer."""
    params, grads = draw(rng, sizes=(300, 50000)), draw(rng, sizes=(300, 50000))
    bufs = [np.full_like(p, 7.0) for p in params]  # garbage where first_step is True: must not be read
    bufs[1] = draw(rng, sizes=(50000,))[0]
    kwargs = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    together_p, together_b = [p.copy() for p in params], [b.copy() for b in bufs]
    sgd_step(together_p, grads, together_b, first_step=[True, False], backend=backend, **kwargs)
    for k, first in enumerate([True, False]):
        p, b = params[k].copy(), bufs[k].copy()
        sgd_step(p, grads[k], b, first_step=first, backend=backend, **kwargs)
        assert_bitwise(together_p[k], p, f"params[{k}]")
        assert_bitwise(together_b[k], b, f"buffer[{k}]")
    assert_bitwise(together_b[0], grads[0] + np.float32(0.01) * params[0], "cloned buffer")


def test_functional_needs_buffers_with_momentum():
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="momentum != 0 needs momentum_buffers"):
        sgd_step(p, p.copy(), momentum=0.9)
    with pytest.raises(ValueError, match="first_step must be a bool or one bool per tensor"):
        sgd_step([p], [p.copy()], [np.zeros(3, np.float32)], momentum=0.9, first_step=[True, False])
    sgd_step(p, p.copy(), lr=0.5)  # momentum 0: no buffers needed
    assert_bitwise(p, np.full(3, 0.5, np.float32), "plain step")


def test_state_dict_has_buffers_only_with_momentum_and_no_step(rng):
    params = draw(rng, sizes=(4, 5))
    opt = pyopt.optim.SGD(params, lr=0.1, momentum=0.5)
    opt.step(draw(rng, sizes=(4, 5)))
    state = opt.state_dict()["state"]
    assert set(state) == {0, 1} and all(set(entry) == {"momentum_buffer"} for entry in state.values())


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (dict(lr=float("nan")), "Invalid learning rate: nan"),
    (dict(lr=float("inf")), "Invalid learning rate: inf"),
    (dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    (dict(weight_decay=-1e-4), "Invalid weight_decay value: -0.0001"),
    (dict(dampening=float("inf")), "Invalid dampening value: inf"),
    (dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov momentum requires a momentum and zero dampening"),
])
def test_bad_hyper_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pyopt.optim.SGD([np.ones(3, np.float32)], **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        sgd_step(np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), **kwargs)


def test_messages_match_torch():
    for kwargs in (dict(lr=-0.1), dict(momentum=-0.5), dict(nesterov=True, momentum=0.9, dampening=0.1)):
        with pytest.raises(ValueError) as theirs:
            torch.optim.SGD([torch.ones(3)], **kwargs)
        with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
            pyopt.optim.SGD([np.ones(3, np.float32)], **kwargs)


def test_hyper_parameters_changed_to_bad_values_raise_before_any_write(rng):
    params = draw(rng, sizes=(5,))
    opt = pyopt.optim.SGD([params[0].copy()], lr=0.1, momentum=0.9)
    before = opt.param_groups[0]["params"][0].copy()
    opt.param_groups[0]["nesterov"] = True
    opt.param_groups[0]["dampening"] = 0.5
    with pytest.raises(ValueError, match="Nesterov"):
        opt.step(draw(rng, sizes=(5,)))
    assert_bitwise(opt.param_groups[0]["params"][0], before, "param")
    assert opt.state == {}


def test_non_numeric_hyper_parameter_is_a_type_error():
    with pytest.raises(TypeError, match="lr must be a real number"):
        pyopt.optim.SGD([np.ones(3)], lr="0.1")


def test_hyper_parameter_past_the_float_range_is_refused_as_not_finite():
    with pytest.raises(ValueError, match="Invalid learning rate: inf"):
        pyopt.optim.SGD([np.ones(3, np.float32)], lr=10**400)

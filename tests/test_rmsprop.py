"""RMSprop-specific tests: state per mode, identities, validation, and the float64 reference against
torch.optim.RMSprop."""
import re

import numpy as np
import pytest
from _compare import assert_bitwise
from _families import FAMILIES, draw
from _torch import torch

import pyopt
from pyopt.functional import rmsprop_step

CONFIGS = FAMILIES["rmsprop"].configs


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_state_names_follow_the_modes(centered, momentum, rng):
    opt = pyopt.optim.RMSprop(draw(rng, sizes=(3,)), centered=centered, momentum=momentum)
    opt.step(draw(rng, sizes=(3,)))
    expected = {"step", "square_avg"} | ({"grad_avg"} if centered else set()) | ({"momentum_buffer"} if momentum
                                                                                  else set())
    assert set(opt.state_dict()["state"][0]) == expected
    assert opt.state_dict()["state"][0]["step"] == 1.0


def test_first_step_with_alpha_zero_is_sign_descent(backend, rng):
    """alpha = 0 and eps = 0: s = g^2 and sqrt(g^2) = |g| exactly, so the first momentum buffer is sign(g) and,
    with a power-of-two lr, every element moves by exactly lr against the sign of its gradient."""
    params, grads = draw(rng), draw(rng)
    opt = pyopt.optim.RMSprop([p.copy() for p in params], lr=0.25, alpha=0.0, eps=0.0, momentum=0.5,
                              backend=backend)
    opt.step(grads)
    for k, (p, g) in enumerate(zip(params, grads)):
        assert_bitwise(opt.state[k]["momentum_buffer"], np.sign(g), f"momentum_buffer[{k}]")
        assert_bitwise(opt.param_groups[0]["params"][k], p - np.float32(0.25) * np.sign(g), f"params[{k}]")


def test_centered_on_a_constant_gradient_has_zero_variance(backend):
    """alpha = 0.5 and a gradient of 1 every step: s and a both equal 1 - 2^-t exactly, and
    s - a^2 = (1 - 2^-t) 2^-t, so the step divides by sqrt of that plus eps: a check of the centered branch
    against closed forms, all exact in binary (lerp's weight 0.5 takes its second branch)."""
    p = np.zeros(4, np.float64)
    opt = pyopt.optim.RMSprop([p], lr=1.0, alpha=0.5, eps=0.0, centered=True, backend=backend)
    expected = 0.0
    for t in range(1, 6):
        opt.step([np.ones(4)])
        s = 1 - 0.5**t
        expected -= 1 / np.sqrt(s - s * s)
        assert_bitwise(opt.state[0]["square_avg"], np.full(4, s), f"square_avg at step {t}")
        assert_bitwise(opt.state[0]["grad_avg"], np.full(4, s), f"grad_avg at step {t}")
        np.testing.assert_allclose(p, expected, rtol=1e-15)


@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_maximize_is_minimize_of_the_negated_gradient(config, backend, rng):
    kwargs = dict(CONFIGS[config], maximize=False)
    params = draw(rng)
    up = pyopt.optim.RMSprop([p.copy() for p in params], backend=backend, **dict(kwargs, maximize=True))
    down = pyopt.optim.RMSprop([p.copy() for p in params], backend=backend, **kwargs)
    for _ in range(4):
        grads = draw(rng)
        up.step(grads)
        down.step([-g for g in grads])
    for k, (a, b) in enumerate(zip(up.param_groups[0]["params"], down.param_groups[0]["params"])):
        assert_bitwise(a, b, f"params[{k}]")
    for index, buffers in up.state.items():
        for role, buf in buffers.items():
            assert_bitwise(buf, down.state[index][role], f"state[{index}][{role!r}]")


def test_functional_equals_the_optimizer(backend, rng):
    kwargs = dict(lr=3e-3, alpha=0.9, eps=1e-3, weight_decay=0.05, momentum=0.5, centered=True)
    params = draw(rng, sizes=(9, 40000))
    opt = pyopt.optim.RMSprop([p.copy() for p in params], backend=backend, **kwargs)
    sq, ga, mb = ([np.zeros_like(p) for p in params] for _ in range(3))
    for _ in range(3):
        grads = draw(rng, sizes=(9, 40000))
        opt.step(grads)
        rmsprop_step(params, grads, sq, ga, mb, backend=backend, **kwargs)
    for k, p in enumerate(params):
        assert_bitwise(opt.param_groups[0]["params"][k], p, f"params[{k}]")
        assert_bitwise(opt.state[k]["grad_avg"], ga[k], f"grad_avg[{k}]")


def test_functional_needs_the_buffers_its_modes_use():
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="centered=True needs grad_avgs"):
        rmsprop_step(p, p.copy(), np.zeros(3, np.float32), centered=True)
    with pytest.raises(ValueError, match="momentum > 0 needs momentum_buffers"):
        rmsprop_step(p, p.copy(), np.zeros(3, np.float32), momentum=0.9)


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    (dict(weight_decay=-1e-4), "Invalid weight_decay value: -0.0001"),
    (dict(alpha=-0.99), "Invalid alpha value: -0.99"),
    (dict(alpha=float("nan")), "Invalid alpha value: nan"),
    (dict(lr=float("inf")), "Invalid learning rate: inf"),
])
def test_bad_hyper_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pyopt.optim.RMSprop([np.ones(3, np.float32)], **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        rmsprop_step(np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), **kwargs)


def test_messages_match_torch():
    for kwargs in (dict(lr=-0.1), dict(eps=-1e-8), dict(momentum=-0.5), dict(weight_decay=-1e-4),
                   dict(alpha=-0.99)):
        with pytest.raises(ValueError) as theirs:
            torch.optim.RMSprop([torch.ones(3)], **kwargs)
        with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
            pyopt.optim.RMSprop([np.ones(3, np.float32)], **kwargs)

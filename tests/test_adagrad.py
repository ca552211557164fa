"""Adagrad-specific tests: the decayed learning rate per tensor, the initial accumulator, identities,
validation, and the float64 reference against torch.optim.Adagrad."""
import re

import numpy as np
import pytest
from _compare import assert_bitwise
from _families import FAMILIES, draw
from _torch import torch

import pyopt
from pyopt.functional import adagrad_step
from pyopt.reference.adagrad import clr

CONFIGS = FAMILIES["adagrad"].configs


def test_param_groups_with_their_own_initial_accumulator(rng):
    a, b = draw(rng, sizes=(3, 4))
    opt = pyopt.optim.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 2.5}],
                              initial_accumulator_value=0.5)
    opt.add_param_group({"params": [np.ones(2, np.float32)], "initial_accumulator_value": 1.0})
    opt.step([np.zeros(3, np.float32), np.zeros(4, np.float32), np.zeros(2, np.float32)])
    assert [opt.state[k]["sum"][0] for k in range(3)] == [0.5, 2.5, 1.0]
    assert all(opt.state_dict()["state"][k]["step"] == 1.0 for k in range(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tensors_at_different_steps_in_one_call(dtype, backend, rng):
    """One call with a different step count per tensor (a different decayed lr each) equals one call per tensor."""
    kwargs = dict(lr=0.1, lr_decay=0.3, weight_decay=0.01, eps=1e-6)
    params, grads = draw(rng, dtype, (5, 40000, 9)), draw(rng, dtype, (5, 40000, 9))
    sums = [np.abs(s) for s in draw(rng, dtype, (5, 40000, 9))]
    steps = [1, 4, 9]
    together_p, together_s = [p.copy() for p in params], [s.copy() for s in sums]
    adagrad_step(together_p, grads, together_s, step=steps, backend=backend, **kwargs)
    for k in range(3):
        p, s = params[k].copy(), sums[k].copy()
        adagrad_step(p, grads[k], s, step=steps[k], backend=backend, **kwargs)
        assert_bitwise(together_p[k], p, f"params[{k}]")
        assert_bitwise(together_s[k], s, f"sum[{k}]")


def test_decayed_learning_rate_is_torchs():
    assert clr(0.1, 0.0, 10) == 0.1
    assert clr(0.1, 0.5, 1) == 0.1
    assert clr(0.1, 0.5, 3) == 0.1 / 2.0


def test_first_step_from_zero_is_sign_descent(backend, rng):
    """From a zero accumulator with eps = 0, s = g^2 and sqrt(g^2) = |g| exactly, and a power-of-two lr makes
    (-lr g) / |g| exact: the first step moves every element by exactly lr against the sign of its gradient."""
    params, grads = draw(rng), draw(rng)
    opt = pyopt.optim.Adagrad([p.copy() for p in params], lr=0.125, eps=0.0, backend=backend)
    opt.step(grads)
    for k, (p, g) in enumerate(zip(params, grads)):
        assert_bitwise(opt.param_groups[0]["params"][k], p - np.float32(0.125) * np.sign(g), f"params[{k}]")
        assert_bitwise(opt.state[k]["sum"], g * g, f"sum[{k}]")


@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_maximize_is_minimize_of_the_negated_gradient(config, backend, rng):
    kwargs = dict(CONFIGS[config], maximize=False)
    params = draw(rng)
    up = pyopt.optim.Adagrad([p.copy() for p in params], backend=backend, **dict(kwargs, maximize=True))
    down = pyopt.optim.Adagrad([p.copy() for p in params], backend=backend, **kwargs)
    for _ in range(4):
        grads = draw(rng)
        up.step(grads)
        down.step([-g for g in grads])
    for k, (a, b) in enumerate(zip(up.param_groups[0]["params"], down.param_groups[0]["params"])):
        assert_bitwise(a, b, f"params[{k}]")
        assert_bitwise(up.state[k]["sum"], down.state[k]["sum"], f"sum[{k}]")


def test_weight_decay_zero_leaves_inf_params_finite_elsewhere(backend):
    """weight_decay = 0 skips the term (as torch does): an inf param stays inf without turning its grad NaN."""
    p = np.array([np.inf, 1.0, -np.inf], np.float32)
    opt = pyopt.optim.Adagrad([p], lr=0.1, backend=backend)
    opt.step([np.array([0.5, 0.5, 0.5], np.float32)])
    assert np.isinf(p[[0, 2]]).all() and np.isfinite(p[1]) and not np.isnan(opt.state[0]["sum"]).any()


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (dict(lr_decay=-0.5), "Invalid lr_decay value: -0.5"),
    (dict(weight_decay=-1e-4), "Invalid weight_decay value: -0.0001"),
    (dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value value: -1.0"),
    (dict(eps=-1e-10), "Invalid epsilon value: -1e-10"),
    (dict(eps=float("nan")), "Invalid epsilon value: nan"),
    (dict(lr_decay=float("inf")), "Invalid lr_decay value: inf"),
])
def test_bad_hyper_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pyopt.optim.Adagrad([np.ones(3, np.float32)], **kwargs)
    if "initial_accumulator_value" not in kwargs:
        with pytest.raises(ValueError, match=re.escape(message)):
            adagrad_step(np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), step=1, **kwargs)


def test_messages_match_torch():
    for kwargs in (dict(lr=-0.1), dict(lr_decay=-0.5), dict(initial_accumulator_value=-1.0), dict(eps=-1e-10)):
        with pytest.raises(ValueError) as theirs:
            torch.optim.Adagrad([torch.ones(3)], **kwargs)
        with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
            pyopt.optim.Adagrad([np.ones(3, np.float32)], **kwargs)


def test_functional_step_must_count_from_one():
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="step counts from 1"):
        adagrad_step(p, p.copy(), np.zeros(3, np.float32), step=0)

"""RELIABILITY.md's bad-input catalogue for every optimizer: a clear exception, raised before any write."""
import numpy as np
import pytest
from _compare import assert_bitwise
from _families import FAMILIES

import pyopt
from pyopt import functional as F

NAN, INF = float("nan"), float("inf")
COMMON_BAD_HPARAMS = [
    (dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (dict(lr=NAN), "Invalid learning rate: nan"),
    (dict(lr=INF), "Invalid learning rate: inf"),
    (dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (dict(weight_decay=NAN), "Invalid weight_decay value: nan"),
]
FAMILY_BAD_HPARAMS = {
    "adam": [(dict(eps=-1e-8), "Invalid epsilon value"), (dict(betas=(1.0, 0.999)), "beta parameter at index 0"),
             (dict(betas=(0.9, -0.1)), "beta parameter at index 1"), (dict(betas=(0.9, NAN)), "index 1"),
             (dict(eps=INF), "Invalid epsilon value: inf")],
    "adamw": [(dict(betas=(0.9, 1.5)), "beta parameter at index 1")],
}


def family_bad_cases():
    for family in FAMILIES:
        for kwargs, message in COMMON_BAD_HPARAMS + FAMILY_BAD_HPARAMS.get(family, []):
            yield pytest.param(family, kwargs, message, id=f"{family}-{kwargs}")


@pytest.mark.parametrize("family,kwargs,message", list(family_bad_cases()))
def test_invalid_hyper_parameters_raise_at_construction(family, kwargs, message):
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FAMILIES[family].cls([p], **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_invalid_hyper_parameter_set_between_steps_raises_before_writing(family, rng):
    p = rng.standard_normal(5).astype(np.float32)
    before = p.copy()
    opt = FAMILIES[family].cls([p])
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.step([rng.standard_normal(5).astype(np.float32)])
    assert_bitwise(p, before)
    assert opt.state == {}


@pytest.mark.parametrize("family", FAMILIES)
def test_params_must_be_a_non_empty_list_of_distinct_float_arrays(family):
    cls = FAMILIES[family].cls
    p = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="list of arrays"):
        cls(p)
    with pytest.raises(ValueError, match="empty parameter list"):
        cls([])
    with pytest.raises(ValueError, match="same array or overlap"):
        cls([p, p])
    with pytest.raises(ValueError, match="same array or overlap"):
        cls([{"params": [p]}, {"params": [p[1:3]]}])
    for bad in (np.ones(4, np.int32), np.ones(4, bool), np.ones(4, np.complex64)):
        with pytest.raises(TypeError, match="float32 or float64"):
            cls([bad])
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cls([[1.0, 2.0]])
    with pytest.raises(ValueError, match="C-contiguous"):
        cls([np.ones((4, 4), np.float32)[:, 1]])
    with pytest.raises(ValueError, match="C-contiguous"):
        cls([np.ones(8, np.float32)[::-1]])
    with pytest.raises(ValueError, match="C-contiguous"):
        cls([np.broadcast_to(np.float32(1), (5,))])  # stride 0
    readonly = np.ones(4, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        cls([readonly])


def bad_grad_cases(rng):
    p0 = rng.standard_normal(6).astype(np.float32)
    p1 = rng.standard_normal((2, 3)).astype(np.float32)
    good = [rng.standard_normal(6).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)]
    return [p0, p1], [
        ([good[0], good[1].ravel()], ValueError, r"grads\[1\] has shape \(6,\) but params\[1\] has shape \(2, 3\)"),
        ([good[0], good[1].astype(np.float64)], TypeError, r"grads\[1\] has dtype float64 but params\[1\]"),
        ([good[0], p1], ValueError, "overlap in memory"),
        ([p1.ravel(), good[1]], ValueError, "overlap in memory"),
        ([good[0], np.ones((2, 6), np.float32)[:, ::2]], ValueError, "C-contiguous"),
        ([good[0]], ValueError, "grads has 1 entries but the optimizer has 2 params"),
        (good[0], TypeError, "grads must be a list"),
        ([good[0], [1.0] * 6], TypeError, "numpy.ndarray"),
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_grads_raise_and_leave_every_array_unchanged(family, rng):
    params, cases = bad_grad_cases(rng)
    opt = FAMILIES[family].cls(params, **FAMILIES[family].configs[-1])
    good = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    opt.step(good)  # state exists: the failed steps must not touch it either
    snapshot = [p.copy() for p in params] + [b.copy() for s in opt.state.values() for b in s.values()]
    steps_before = opt.state_dict()["state"]
    steps_before = {k: v.get("step") for k, v in steps_before.items()}
    for grads, exc, message in cases:
        with pytest.raises(exc, match=message):
            opt.step(grads)
        after = [p for p in params] + [b for s in opt.state.values() for b in s.values()]
        for k, (a, b) in enumerate(zip(after, snapshot)):
            assert_bitwise(a, b, f"array {k} after a refused step")
        assert {k: v.get("step") for k, v in opt.state_dict()["state"].items()} == steps_before


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_with_wrong_layout_is_refused_and_not_mutated(family, rng):
    cls = FAMILIES[family].cls
    params = [rng.standard_normal(4).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    opt = cls(params, **FAMILIES[family].configs[0])  # a config with state (plain SGD has none to mismatch)
    opt.step([np.ones(4, np.float32), np.ones(3, np.float32)])
    sd = opt.state_dict()
    other = cls([np.ones(4, np.float32)])
    with pytest.raises(ValueError, match="has 2 params"):
        other.load_state_dict(sd)
    two_groups = cls([{"params": [np.ones(4, np.float32)]}, {"params": [np.ones(3, np.float32)]}])
    with pytest.raises(ValueError, match="parameter groups"):
        two_groups.load_state_dict(sd)
    swapped = cls([np.ones(3, np.float32), np.ones(4, np.float32)])
    with pytest.raises(ValueError, match="shape"):
        swapped.load_state_dict(sd)
    assert sd["param_groups"][0]["params"] == [0, 1]


def test_a_state_dict_without_newer_optional_keys_still_loads(rng):
    params = [rng.standard_normal(4).astype(np.float32)]
    opt = pyopt.optim.Adam(params)
    opt.step([np.ones(4, np.float32)])
    sd = opt.state_dict()
    for key in ("maximize", "decoupled_weight_decay"):
        del sd["param_groups"][0][key]
    fresh = pyopt.optim.Adam([params[0].copy()])
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["maximize"] is False


def test_functional_checks_every_array_before_writing(rng):
    p = rng.standard_normal(10).astype(np.float32)
    g = rng.standard_normal(10).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    before = p.copy()
    with pytest.raises(ValueError, match="exp_avgs\\[0\\] and exp_avg_sqs\\[0\\] overlap"):
        F.adam_step(p, g, m, m, step=1)
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros_like(p)
        ro.flags.writeable = False
        F.adam_step(p, g, m, ro, step=1)
    with pytest.raises(ValueError, match="step counts from 1"):
        F.adam_step(p, g, m, v, step=0)
    with pytest.raises(ValueError, match="amsgrad=True needs max_exp_avg_sqs"):
        F.adam_step(p, g, m, v, step=1, amsgrad=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        F.adam_step(p, g, m, v, step=1, lr=-1)
    assert_bitwise(p, before)
    assert not m.any() and not v.any()

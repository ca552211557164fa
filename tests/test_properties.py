"""Property tests (hypothesis): for any shapes, dtype and hyper-parameters, the C kernels give the reference's
bits, and the algebraic identities of the rules hold."""
import numpy as np
import pytest
from _compare import assert_bitwise
from _families import FAMILIES
from hypothesis import given, settings
from hypothesis import strategies as st

from pyopt import _c

unit = st.floats(0.0, 0.999, allow_nan=False)
common = dict(lr=st.floats(0.0, 1.0), weight_decay=st.sampled_from([0.0, 1e-4, 0.1, 0.5]),
              maximize=st.booleans())
HPARAMS = {
    "adam": dict(common, betas=st.tuples(unit, unit), eps=st.floats(1e-12, 1e-2), amsgrad=st.booleans(),
                 decoupled_weight_decay=st.booleans()),
    "adamw": dict(common, betas=st.tuples(unit, unit), eps=st.floats(1e-12, 1e-2), amsgrad=st.booleans()),
    "sgd": dict(common, momentum=st.sampled_from([0.0, 0.5, 0.9]), dampening=st.sampled_from([0.0, 0.1])),
    "adagrad": dict(common, lr_decay=st.floats(0.0, 0.1), eps=st.floats(1e-12, 1e-2),
                    initial_accumulator_value=st.floats(0.0, 1.0)),
    "rmsprop": dict(common, alpha=unit, eps=st.floats(1e-12, 1e-2), momentum=st.sampled_from([0.0, 0.9]),
                    centered=st.booleans()),
}
shapes = st.lists(st.lists(st.integers(0, 40), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f in HPARAMS])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_c_matches_the_reference_bitwise_for_any_shapes_and_hyper_parameters(family, data):
    kwargs = data.draw(st.fixed_dictionaries(HPARAMS[family]), label="hyper-parameters")
    shape_list = data.draw(shapes, label="shapes")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    isa = data.draw(st.sampled_from(_c.isas()), label="isa")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shape_list]
    cls = FAMILIES[family].cls
    previous = _c.set_isa(isa)
    try:
        fast = cls([p.copy() for p in params], backend="c", **kwargs)
        ref = cls([p.copy() for p in params], backend="numpy", **kwargs)
        for _ in range(3):
            grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
            with np.errstate(all="ignore"):  # extreme draws may overflow in both, identically
                fast.step(grads)
                ref.step(grads)
    finally:
        _c.set_isa(previous)
    for k, (a, b) in enumerate(zip(fast.param_groups[0]["params"], ref.param_groups[0]["params"])):
        assert a.shape == params[k].shape and a.dtype == dtype
        assert_bitwise(a, b, f"params[{k}]")


@pytest.mark.parametrize("family", [f for f in FAMILIES if f in HPARAMS])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_maximize_equals_minimizing_the_negated_gradient(family, data):
    kwargs = data.draw(st.fixed_dictionaries(HPARAMS[family]), label="hyper-parameters")
    kwargs["maximize"] = False
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in (3, 50, 1)]
    cls = FAMILIES[family].cls
    up = cls([p.copy() for p in params], **dict(kwargs, maximize=True))
    down = cls([p.copy() for p in params], **kwargs)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
        up.step(grads)
        down.step([-g for g in grads])
    for a, b in zip(up.param_groups[0]["params"], down.param_groups[0]["params"]):
        assert_bitwise(a, b)


def test_adamw_without_weight_decay_is_adam(rng):
    params = [rng.standard_normal(n).astype(np.float32) for n in (5, 300)]
    a = FAMILIES["adam"].cls([p.copy() for p in params], lr=0.01)
    w = FAMILIES["adamw"].cls([p.copy() for p in params], lr=0.01, weight_decay=0.0)
    for _ in range(5):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
        a.step(grads)
        w.step(grads)
    for x, y in zip(a.param_groups[0]["params"], w.param_groups[0]["params"]):
        assert_bitwise(x, y)


@pytest.mark.parametrize("family", FAMILIES)
def test_two_param_groups_equal_two_optimizers(family, rng):
    cls = FAMILIES[family].cls
    configs = FAMILIES[family].configs
    a, b = rng.standard_normal(17).astype(np.float32), rng.standard_normal(40).astype(np.float64)
    grouped = cls([dict(params=[a.copy()], **configs[0]), dict(params=[b.copy()], **configs[-1])])
    first, second = cls([a.copy()], **configs[0]), cls([b.copy()], **configs[-1])
    for _ in range(4):
        ga, gb = rng.standard_normal(17).astype(np.float32), rng.standard_normal(40).astype(np.float64)
        grouped.step([ga, gb])
        first.step([ga])
        second.step([gb])
    assert_bitwise(grouped.param_groups[0]["params"][0], first.param_groups[0]["params"][0])
    assert_bitwise(grouped.param_groups[1]["params"][0], second.param_groups[0]["params"][0])

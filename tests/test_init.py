"""pyopt.init: moments against the variance rule, fans and gains against torch.nn.init, reproducibility, errors."""
import math

import numpy as np
import pytest

from pyopt import init

torch = pytest.importorskip("torch")

SIGMAS = 5.0  # every statistical assertion allows 5 standard errors: a false failure has odds ~ 1 in 3.5 million

# name -> (function, default mode, default gain, distribution)
INITIALIZERS = {
    "lecun_uniform": (init.lecun_uniform, "fan_in", 1.0, "uniform"),
    "lecun_normal": (init.lecun_normal, "fan_in", 1.0, "truncated_normal"),
    "xavier_uniform": (init.xavier_uniform, "fan_avg", 1.0, "uniform"),
    "xavier_normal": (init.xavier_normal, "fan_avg", 1.0, "normal"),
    "he_uniform": (init.he_uniform, "fan_in", math.sqrt(2), "uniform"),
    "he_normal": (init.he_normal, "fan_in", math.sqrt(2), "normal"),
}
# a conv weight (out=400, in=300, kernel 3): fans 900 / 1200 / avg 1050 differ by >= 14%, far above 5 SE (~1.3%)
SHAPE = (400, 300, 3)
FAN = {"fan_in": 900, "fan_out": 1200, "fan_avg": 1050}


def _truncated_moments(a=2.0):
    """E[z^2], E[z^4] of a standard normal truncated to [-a, a] (integration by parts)."""
    pdf, mass = math.exp(-a * a / 2) / math.sqrt(2 * math.pi), math.erf(a / math.sqrt(2))
    m2 = 1 - 2 * a * pdf / mass
    return m2, 3 * m2 - 2 * a**3 * pdf / mass


KURTOSIS = {"uniform": 1.8, "normal": 3.0,
            "truncated_normal": _truncated_moments()[1] / _truncated_moments()[0] ** 2}  # ~2.37


def assert_moments(w, variance):
    """Sample mean 0 and variance ``variance``, each within SIGMAS standard errors.

    SE(mean) = sqrt(var / n); SE(sample variance) = sqrt((m4 - var^2) / n), with the fourth central moment
    m4 estimated from the sample (it depends on the distribution).
    """
    x = np.asarray(w, dtype=np.float64).ravel()
    n = x.size
    mean, var = x.mean(), x.var()
    m4 = np.mean((x - mean) ** 4)
    se_mean, se_var = math.sqrt(variance / n), math.sqrt((m4 - var * var) / n)
    assert abs(mean) < SIGMAS * se_mean, f"mean {mean:.3e}, expected 0 +- {SIGMAS * se_mean:.3e}"
    assert abs(var - variance) < SIGMAS * se_var, \
        f"variance {var:.6e}, expected {variance:.6e} +- {SIGMAS * se_var:.3e} (ratio {var / variance:.5f})"


def test_moment_check_can_fail(rng):
    """The tolerance is tight enough to catch a 3% variance error or a fan mix-up (14%)."""
    w = rng.standard_normal(SHAPE) * math.sqrt(1 / 900)
    assert_moments(w, 1 / 900)
    with pytest.raises(AssertionError):
        assert_moments(w, 1.03 / 900)
    with pytest.raises(AssertionError):
        assert_moments(w, 1 / 1050)
    with pytest.raises(AssertionError):
        assert_moments(w + 6e-4, 1 / 900)  # a mean of 6e-4 is 10.8 SE


@pytest.mark.parametrize("mode", init.MODES)
@pytest.mark.parametrize("name", list(INITIALIZERS))
def test_variance_rule(name, mode):
    fn, _, gain, _ = INITIALIZERS[name]
    w = fn(SHAPE, mode=mode, rng=7)
    assert w.shape == SHAPE and w.dtype == np.float32
    assert_moments(w, gain**2 / FAN[mode])


@pytest.mark.parametrize("name", list(INITIALIZERS))
def test_defaults(name):
    """Default mode and gain are the rule's: LeCun 1/fan_in, Xavier 2/(fan_in+fan_out), He 2/fan_in."""
    fn, mode, gain, _ = INITIALIZERS[name]
    assert_moments(fn(SHAPE, rng=11), gain**2 / FAN[mode])


@pytest.mark.parametrize("name", list(INITIALIZERS))
def test_distribution_shape(name):
    """The documented distribution: kurtosis (1.8 uniform, ~2.37 truncated normal, 3 normal) and bounds."""
    fn, mode, gain, dist = INITIALIZERS[name]
    x = fn(SHAPE, rng=3, dtype=np.float64).ravel()
    kurtosis = np.mean(x**4) / np.mean(x**2) ** 2
    assert abs(kurtosis - KURTOSIS[dist]) < 0.05, (kurtosis, dist)  # SE of the kurtosis here is < 0.01
    std = gain / math.sqrt(FAN[mode])
    bound = {"uniform": math.sqrt(3) * std, "normal": math.inf, "truncated_normal": 2 * std / 0.87962566103423978}
    assert np.abs(x).max() <= bound[dist]
    if dist != "normal":
        assert np.abs(x).max() > 0.999 * bound[dist]


def test_gain_by_name_and_value():
    assert_moments(init.he_uniform(SHAPE, gain="tanh", rng=1), (5 / 3) ** 2 / 900)
    assert_moments(init.xavier_normal(SHAPE, gain=0.5, rng=2), 0.25 / 1050)
    g = init.calculate_gain("leaky_relu", 0.2)
    assert_moments(init.kaiming_normal(SHAPE, gain=g, mode="fan_out", rng=3), g * g / 1200)


@pytest.mark.parametrize("distribution", init.DISTRIBUTIONS)
def test_variance_scaling(distribution):
    w = init.variance_scaling(SHAPE, scale=3.0, mode="fan_out", distribution=distribution, rng=5)
    assert_moments(w, 3.0 / 1200)


# ---- agreement with torch.nn.init ------------------------------------------------------------------------------

FAN_SHAPES = [(3, 5), (1, 1), (10, 1), (64, 3, 3, 3), (16, 8, 5), (4, 2, 3, 4, 5), (7, 11, 1, 1), (0, 4), (5, 0, 3)]


@pytest.mark.parametrize("shape", FAN_SHAPES)
def test_fans_match_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.fans(shape) == expected
    assert init.fans(list(shape)) == expected


@pytest.mark.parametrize("shape", [(), (5,), 5])
def test_fans_need_two_dimensions_like_torch(shape):
    with pytest.raises(ValueError):
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.fans(shape)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.he_normal(shape)


GAIN_CASES = [(name, None) for name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                        "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu", "selu")]
GAIN_CASES += [("leaky_relu", p) for p in (None, 0.0, 0.2, 1, -0.3, 5.5)]


@pytest.mark.parametrize("nonlinearity,param", GAIN_CASES)
def test_gains_match_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


def _torch_sample(fn, shape, **kwargs):
    torch.manual_seed(0)
    return fn(torch.empty(shape, dtype=torch.float64), **kwargs).numpy()


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_same_distribution_as_torch(mode):
    """Our samples and torch's have the same variance (both checked against the rule) and the same bound."""
    pairs = [(init.kaiming_uniform, torch.nn.init.kaiming_uniform_, dict(mode=mode, nonlinearity="relu")),
             (init.kaiming_normal, torch.nn.init.kaiming_normal_, dict(mode=mode, nonlinearity="relu"))]
    for ours, theirs, kwargs in pairs:
        t = _torch_sample(theirs, SHAPE, **kwargs)
        w = ours(SHAPE, mode=mode, rng=0, dtype=np.float64)
        assert_moments(t, 2 / FAN[mode])
        assert_moments(w, 2 / FAN[mode])
    t = _torch_sample(torch.nn.init.kaiming_uniform_, SHAPE, mode=mode, nonlinearity="relu")
    w = init.kaiming_uniform(SHAPE, mode=mode, rng=0, dtype=np.float64)
    assert np.abs(w).max() <= math.sqrt(6 / FAN[mode]) and np.abs(t).max() <= math.sqrt(6 / FAN[mode])


def test_xavier_same_distribution_as_torch():
    for ours, theirs in [(init.xavier_uniform, torch.nn.init.xavier_uniform_),
                         (init.xavier_normal, torch.nn.init.xavier_normal_)]:
        assert_moments(_torch_sample(theirs, SHAPE, gain=1.5), 1.5**2 * 2 / (900 + 1200))
        assert_moments(ours(SHAPE, gain=1.5, rng=4), 1.5**2 * 2 / (900 + 1200))
    bound = 1.5 * math.sqrt(6 / (900 + 1200))  # torch's xavier_uniform_ bound
    w = init.xavier_uniform(SHAPE, gain=1.5, rng=4, dtype=np.float64)
    assert bound * 0.999 < np.abs(w).max() <= bound


# ---- reproducibility and dtypes --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(INITIALIZERS))
def test_reproducible(name):
    fn = INITIALIZERS[name][0]
    a, b = fn((30, 20), rng=42), fn((30, 20), rng=42)
    assert np.array_equal(a, b)
    assert np.array_equal(fn((30, 20), rng=np.random.default_rng(42)), a)  # an int seed is default_rng(seed)
    assert not np.array_equal(fn((30, 20), rng=43), a)
    gen = np.random.default_rng(1)
    first, second = fn((30, 20), rng=gen), fn((30, 20), rng=gen)  # a Generator advances
    assert not np.array_equal(first, second)
    assert not np.array_equal(fn((30, 20)), fn((30, 20)))  # None: fresh entropy


@pytest.mark.parametrize("name", list(INITIALIZERS))
def test_float64_and_float32_agree(name):
    fn = INITIALIZERS[name][0]
    w64 = fn((50, 40, 3), rng=9, dtype=np.float64)
    w32 = fn((50, 40, 3), rng=9)
    assert w64.dtype == np.float64 and w32.dtype == np.float32
    assert np.array_equal(w32, w64.astype(np.float32))
    assert fn((50, 40), rng=9, dtype="float64").dtype == np.float64


def test_aliases():
    assert init.glorot_uniform is init.xavier_uniform and init.glorot_normal is init.xavier_normal
    assert init.kaiming_uniform is init.he_uniform and init.kaiming_normal is init.he_normal


def test_zero_sized_shape_is_empty():
    for shape in [(0, 4), (3, 0, 5)]:
        w = init.he_normal(shape, mode="fan_out", rng=0, dtype=np.float64)
        assert w.shape == shape and w.dtype == np.float64


def test_docstrings_state_the_rule():
    for name, (fn, mode, _, _) in INITIALIZERS.items():
        assert fn.__name__ == name and "Var" in fn.__doc__ and repr(mode) in fn.__doc__


# ---- bad inputs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(mode="fan_sum"), ValueError, "mode"),
    (dict(mode="FAN_IN"), ValueError, "mode"),
    (dict(mode=1), TypeError, "mode"),
    (dict(gain=0.0), ValueError, "gain"),
    (dict(gain=-1.0), ValueError, "gain"),
    (dict(gain=float("nan")), ValueError, "gain"),
    (dict(gain=float("inf")), ValueError, "gain"),
    (dict(gain=10**400), ValueError, "gain must be finite"),
    (dict(gain="swish"), ValueError, "nonlinearity"),
    (dict(gain=None), TypeError, "gain"),
    (dict(gain=True), TypeError, "gain"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype="complex128"), TypeError, "dtype"),
    (dict(dtype="not a dtype"), TypeError, "dtype"),
    (dict(rng="seed"), TypeError, "rng"),
    (dict(rng=-1), ValueError, "rng"),
    (dict(rng=1.5), TypeError, "rng"),
    (dict(rng=np.random.RandomState(0)), TypeError, "rng"),
])
@pytest.mark.parametrize("name", ["lecun_normal", "xavier_uniform", "he_normal"])
def test_bad_arguments(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        INITIALIZERS[name][0]((4, 3), **kwargs)


@pytest.mark.parametrize("shape,exc,match", [
    ((3, -1), ValueError, r"shape\[1\]"), ((3, 2.0), TypeError, r"shape\[1\]"), ((True, 3), TypeError, r"shape\[0\]"),
    ("ab", TypeError, "shape"), (None, TypeError, "shape"), (np.zeros((2, 2)), TypeError, "shape"),
])
def test_bad_shapes(shape, exc, match):
    with pytest.raises(exc, match=match):
        init.xavier_normal(shape)


def test_bad_calculate_gain():
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("relu", 0.2)  # torch silently ignores a parameter relu does not have
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("leaky_relu", "0.2")
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("leaky_relu", float("nan"))
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("leaky_relu", 10**400)  # past the float range: not OverflowError
    assert init.calculate_gain("leaky_relu", 1e200) == 0.0  # its square overflows to inf, not OverflowError
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("gelu")
    with pytest.raises(TypeError, match="nonlinearity"):
        init.calculate_gain(None)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(scale=0.0), ValueError, "scale"), (dict(scale="1"), TypeError, "scale"),
    (dict(scale=10**400), ValueError, "scale must be finite"),  # past the float range: not OverflowError
    (dict(distribution="cauchy"), ValueError, "distribution"),
])
def test_bad_variance_scaling(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        init.variance_scaling((4, 3), **kwargs)

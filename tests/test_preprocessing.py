"""Feature-wise standardization: float64 statistics, off-centre features, constant features, partial_fit ==
fit, inverse_transform(transform(x)) == x, shapes and bad inputs."""
import numpy as np
import pytest
from _compare import assert_close

from pyopt.preprocessing import Standardizer, standardize


def features(rng, n=200, dtype=np.float32):
    """Columns with different centres and spreads, one far from zero with a tiny spread."""
    centres = np.array([0.0, 5.0, -3e3, 1e4, 2.0])
    spreads = np.array([1.0, 0.1, 20.0, 1e-2, 3.0])
    return (centres + spreads * rng.standard_normal((n, 5))).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardized_features_have_mean_zero_and_std_one(dtype, rng):
    x = features(rng, dtype=dtype)
    z = standardize(x)
    assert z.dtype == dtype and z.shape == x.shape
    tol = 1e-5 if dtype == np.float32 else 1e-9  # float64: column 3 (1e4 + 1e-2 randn) has condition number 1e6
    assert_close(z.astype(np.float64).mean(axis=0), np.zeros(5), 0, tol, "feature means")
    assert_close(z.astype(np.float64).std(axis=0), np.ones(5), tol, tol, "feature stds")


def test_statistics_are_float64_and_exact_for_float32_input(rng):
    x = features(rng, dtype=np.float32)
    s = Standardizer().fit(x)
    x64 = x.astype(np.float64)
    assert s.mean_.dtype == s.var_.dtype == np.float64
    assert_close(s.mean_, x64.mean(axis=0), 1e-15, 1e-14, "mean_")
    assert_close(s.var_, x64.var(axis=0), 1e-12, 0, "var_")
    z = s.transform(x)
    assert_close(z, (x64 - x64.mean(axis=0)) / x64.std(axis=0), 1.3e-6, 1e-5, "z vs float64 formula")


def test_constant_features_are_centred_not_scaled(rng):
    x = features(rng, dtype=np.float64)
    x[:, 3] = 1e4 + 0.1  # constant, and not exactly representable: the mean must still come out exact
    s = Standardizer().fit(x)
    assert s.var_[3] == 0 and s.scale_[3] == 1
    z = s.transform(x)
    assert (z[:, 3] == 0).all()
    s_eps = Standardizer(eps=0.5).fit(x)  # eps treats small spreads as constant too
    assert s_eps.scale_[1] == 1 and s_eps.scale_[0] != 1


def test_inverse_transform_undoes_transform_and_other_data_uses_the_fitted_statistics(rng):
    train, test = features(rng, dtype=np.float64), features(rng, n=17, dtype=np.float64)
    s = Standardizer().fit(train)
    assert_close(s.inverse_transform(s.transform(test)), test, 1e-12, 1e-9, "round trip")
    # column 3 (1e4 + 1e-2 randn) amplifies the rounding of its mean 1e6 times, here and in numpy's formula
    assert_close(s.transform(test), (test - train.mean(axis=0)) / train.std(axis=0), 1e-9, 1e-9, "test set")


def test_partial_fit_equals_fit(rng):
    x = features(rng, n=301, dtype=np.float64)
    whole = Standardizer(ddof=1).fit(x)
    parts = Standardizer(ddof=1)
    for chunk in np.array_split(x, [1, 50, 51, 200]):
        parts.partial_fit(chunk)
    assert parts.n_samples_seen_ == 301
    assert_close(parts.mean_, whole.mean_, 1e-14, 1e-12, "mean_")
    assert_close(parts.var_, whole.var_, 1e-12, 0, "var_ (ddof=1)")
    assert_close(whole.var_, x.var(axis=0, ddof=1), 1e-12, 0, "ddof=1 is the unbiased variance")


def test_other_axes_and_integer_input(rng):
    x = rng.integers(0, 100, size=(4, 30, 3))  # statistics over axes 0 and 1, features along the last
    z = standardize(x, axis=(0, 1))
    assert z.dtype == np.float64
    xf = x.astype(np.float64)
    assert_close(z, (xf - xf.mean(axis=(0, 1))) / xf.std(axis=(0, 1)), 1e-12, 1e-12, "axis=(0, 1)")
    rows = standardize(x[0], axis=1)  # each row of a matrix
    assert_close(rows.mean(axis=1), np.zeros(30), 0, 1e-12, "axis=1")
    s = Standardizer(axis=-1).fit(x)
    assert s.mean_.shape == (4, 30)


def test_bad_inputs():
    x = np.ones((5, 3))
    with pytest.raises(TypeError, match="real numbers"):
        standardize(np.ones((3, 2), complex))
    with pytest.raises(TypeError, match="real numbers"):
        standardize(np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        standardize(x, axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        standardize(x, axis=0.5)
    with pytest.raises(ValueError, match="0 samples"):
        standardize(np.ones((0, 3)))
    with pytest.raises(ValueError, match="Invalid eps"):
        Standardizer(eps=-1.0)
    with pytest.raises(ValueError, match="Invalid eps"):
        Standardizer(eps=10**400)  # past the float range: not numpy's TypeError
    with pytest.raises(TypeError, match="eps must be a real number, got str"):
        Standardizer(eps="0.1")
    with pytest.raises(ValueError, match="Invalid ddof"):
        Standardizer(ddof=-1)
    with pytest.raises(TypeError, match="ddof must be an int, got float"):
        Standardizer(ddof=1.0)
    with pytest.raises(ValueError, match="not fitted"):
        Standardizer().transform(x)
    s = Standardizer().fit(x)
    with pytest.raises(ValueError, match="do not match the fitted features"):
        s.transform(np.ones((5, 4)))
    with pytest.raises(ValueError, match="fitted on"):
        s.partial_fit(np.ones((2, 4)))

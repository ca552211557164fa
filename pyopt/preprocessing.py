"""Feature-wise input standardization, the first normalization step of the lecture: each feature is centred on
its mean over the samples and divided by its standard deviation,

.. math::

    z = \\frac{x - \\mu}{s}, \\qquad \\mu = \\frac1n \\sum_i x_i, \\qquad
    s = \\sqrt{\\frac{1}{n - \\text{ddof}} \\sum_i (x_i - \\mu)^2} \\quad (s := 1 \\text{ where } s \\le \\epsilon)

with the statistics over ``axis`` (the samples; axis 0 for a (samples, features) matrix).  Statistics are
float64 whatever the input dtype, by the corrected two-pass algorithm (the mean is refined by the mean of the
deviations from it, so a constant feature gets exactly ``s = 0``; never :math:`E[x^2] - E[x]^2`).  Features
with ``s <= eps`` (``eps=0``: exactly constant ones) are only centred, as scikit-learn's ``StandardScaler`` does.
Outputs keep a float input's dtype (float64 for integer input).
References: LeCun et al., "Efficient BackProp", 1998, section 4.3; Chan, Golub & LeVeque, "Algorithms for
computing the sample variance", 1983 (the corrected two-pass and the pairwise combination used by partial_fit).
"""
import math

import numpy as np

from pyopt.arrays import real_number

__all__ = ["Standardizer", "standardize"]


def _as_data(x, name="x"):
    """An ndarray of real numbers (bool, complex and object arrays are refused)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    return x


def _check_axes(axis, x):
    if x.ndim == 0:
        raise ValueError("standardization needs at least one axis of samples, got a 0-d array")
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, (bool, np.bool_)):
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"axis {a} is out of range for an input of shape {x.shape}")
    axes = tuple(sorted({int(a) % x.ndim for a in axes}))
    if not axes:
        raise ValueError("axis must name at least one axis")
    return axes


def _out_dtype(x):
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


def _moments(x, axes):
    """(n, mean, m2) over ``axes`` in float64: m2 is the sum of squared deviations (corrected two-pass)."""
    xf = x.astype(np.float64, copy=False)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if n == 0:
        shape = tuple(1 if a in axes else s for a, s in enumerate(x.shape))
        return 0, np.zeros(shape), np.zeros(shape)
    mean = xf.mean(axis=axes, keepdims=True)
    mean = mean + (xf - mean).mean(axis=axes, keepdims=True)  # zero in exact arithmetic; removes its rounding
    d = xf - mean
    m2 = (d * d).sum(axis=axes, keepdims=True)
    return n, mean, m2


def _scale(var, eps):
    std = np.sqrt(var)
    return np.where(std > eps, std, 1.0)


def _check_eps_ddof(eps, ddof):
    """(eps, ddof) as float and int, or TypeError / ValueError naming the one that is wrong."""
    eps = real_number(eps, "eps")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"Invalid eps value: {eps!r} (a finite number >= 0)")
    if not isinstance(ddof, (int, np.integer)) or isinstance(ddof, (bool, np.bool_)):
        raise TypeError(f"ddof must be an int, got {type(ddof).__name__}")
    if ddof < 0:
        raise ValueError(f"Invalid ddof value: {ddof!r} (an int >= 0)")
    return eps, int(ddof)


def standardize(x, axis=0, eps=0.0, ddof=0):
    """``(x - mean) / std`` per feature, the statistics over ``axis`` (the samples), in float64.

    Features whose std is ``<= eps`` are only centred.  Returns an array of x's float dtype (float64 for
    integers); use :class:`Standardizer` to apply the same statistics to other data (a test set).
    """
    return Standardizer(axis=axis, eps=eps, ddof=ddof).fit_transform(x)


class Standardizer:
    """Feature-wise standardization with statistics learnt by :meth:`fit` (or accumulated by :meth:`partial_fit`)
    and applied by :meth:`transform` / undone by :meth:`inverse_transform`.

    Attributes after fitting (shape: the input's shape without ``axis``): ``mean_``, ``var_`` (with ``ddof``),
    ``scale_`` (the std, 1 where it is ``<= eps``), ``n_samples_seen_``.  All float64.
    """

    def __init__(self, axis=0, eps=0.0, ddof=0):
        self.eps, self.ddof = _check_eps_ddof(eps, ddof)
        self.axis = axis
        self.n_samples_seen_ = 0
        self._mean = self._m2 = None
        self._axes = self._feature_shape = None

    # ---- learning the statistics ----
    def fit(self, x):
        """Statistics of ``x`` alone (forgetting earlier ones).  Returns self."""
        self.n_samples_seen_, self._mean, self._m2 = 0, None, None
        return self.partial_fit(x)

    def partial_fit(self, x):
        """Adds the samples of ``x`` to the statistics (Chan et al.'s pairwise combination; the result equals
        fitting all batches at once up to rounding).  Returns self."""
        x = _as_data(x)
        axes = _check_axes(self.axis, x)
        feature_shape = tuple(s for a, s in enumerate(x.shape) if a not in axes)
        if self._mean is not None and (axes, feature_shape) != (self._axes, self._feature_shape):
            raise ValueError(f"x has features of shape {feature_shape} but the Standardizer was fitted on "
                             f"{self._feature_shape}")
        n, mean, m2 = _moments(x, axes)
        if n == 0:
            if self._mean is None:
                raise ValueError(f"cannot fit a Standardizer on 0 samples (x has shape {x.shape})")
            return self
        if self._mean is None:
            self._mean, self._m2, self.n_samples_seen_ = mean, m2, n
        else:
            na, total = self.n_samples_seen_, self.n_samples_seen_ + n
            delta = mean - self._mean
            self._mean = self._mean + delta * (n / total)
            self._m2 = self._m2 + m2 + delta * delta * (na * n / total)
            self.n_samples_seen_ = total
        self._axes, self._feature_shape = axes, feature_shape
        return self

    def _require_fitted(self):
        if self._mean is None:
            raise ValueError("this Standardizer is not fitted yet: call fit(x) first")

    @property
    def mean_(self):
        self._require_fitted()
        return self._mean.reshape(self._feature_shape)

    @property
    def var_(self):
        self._require_fitted()
        denominator = self.n_samples_seen_ - self.ddof
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self._m2 / denominator).reshape(self._feature_shape) if denominator > 0 else \
                np.full(self._feature_shape, np.nan)

    @property
    def scale_(self):
        return _scale(self.var_, self.eps)

    # ---- applying them ----
    def _check_like_fit(self, x, name):
        self._require_fitted()
        x = _as_data(x, name)
        if x.ndim != len(self._axes) + len(self._feature_shape) or tuple(
                s for a, s in enumerate(x.shape) if a not in self._axes) != self._feature_shape:
            raise ValueError(f"{name} has shape {x.shape}, whose features (all but axis {self.axis}) do not match "
                             f"the fitted features {self._feature_shape}")
        return x

    def _broadcast(self, a):
        return np.expand_dims(a, self._axes)

    def transform(self, x):
        """``(x - mean_) / scale_`` in float64, returned in x's float dtype (float64 for integers)."""
        x = self._check_like_fit(x, "x")
        z = (x.astype(np.float64) - self._broadcast(self.mean_)) / self._broadcast(self.scale_)
        return z.astype(_out_dtype(x), copy=False)

    def inverse_transform(self, z):
        """``z * scale_ + mean_``: the data back in its original units."""
        z = self._check_like_fit(z, "z")
        x = z.astype(np.float64) * self._broadcast(self.scale_) + self._broadcast(self.mean_)
        return x.astype(_out_dtype(z), copy=False)

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def __repr__(self):
        fitted = f", n_samples_seen_={self.n_samples_seen_}" if self._mean is not None else ""
        return f"Standardizer(axis={self.axis!r}, eps={self.eps!r}, ddof={self.ddof!r}{fitted})"

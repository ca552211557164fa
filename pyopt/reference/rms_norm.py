"""RMSNorm, forward and backward, as ``torch.nn.functional.rms_norm`` defines it.

Per row of ``n`` elements (the trailing ``normalized_shape`` block of ``x``):

.. math::

    r = 1/\\sqrt{\\tfrac1n \\textstyle\\sum_j x_j^2 + \\epsilon}, \\qquad \\hat x_j = x_j\\, r, \\qquad
    y_j = \\hat x_j\\, w_j

Backward, with :math:`g_j = \\partial L/\\partial y_j \\cdot w_j`:

.. math::

    \\frac{\\partial L}{\\partial x_j} = r \\Big(g_j - \\hat x_j\\, \\frac1n \\sum_k g_k \\hat x_k\\Big), \\qquad
    \\frac{\\partial L}{\\partial w} = \\sum_{\\text{rows}} \\frac{\\partial L}{\\partial y}\\, \\hat x

Symbols: :math:`\\epsilon` = ``eps`` (None: ``numpy.finfo(x.dtype).eps``, PyTorch's default), :math:`w` =
``weight`` (None: 1), :math:`r` = ``rstd`` (shape ``x.shape[:-len(normalized_shape)]``).
Convention: PyTorch's (``x * rsqrt(mean(x^2) + eps) * weight``); no mean is subtracted, so no cancellation.
Precision: the sum of squares in float64 for every dtype; rstd stored in float32 for float16 input.
References: Zhang & Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019.

Bytes per element (fp32), the minimum: forward read x, write y = 8; backward read dy, x, write dx = 12.
"""
import numpy as np

from pyopt.reference.layer_norm import _rows, stat_dtype


def default_eps(dtype):
    """PyTorch's default eps for rms_norm: the machine epsilon of the input's dtype."""
    return float(np.finfo(dtype).eps)


def bytes_moved(rows, features, itemsize, *, which="forward", weight=True):
    """Minimum bytes one call moves: ``"forward"`` reads x, weight and writes y, rstd; ``"backward"`` reads dy,
    x, weight, rstd and writes dx, dweight; ``"both"`` is the sum."""
    elems = rows * features
    fwd = itemsize * (2 * elems + features * int(weight) + rows)
    bwd = itemsize * (3 * elems + features * (int(weight) + 1) + rows)
    return {"forward": fwd, "backward": bwd, "both": fwd + bwd}[which]


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """(y, rstd)."""
    normalized_shape = tuple(normalized_shape)
    eps = default_eps(x.dtype) if eps is None else eps
    x2, lead = _rows(x, normalized_shape)
    xf = x2.astype(np.float64)
    ms = (xf * xf).mean(axis=1) if xf.shape[1] else np.full(xf.shape[0], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero row with eps = 0: NaN, as IEEE says
        rstd = 1.0 / np.sqrt(ms + eps)
        y = xf * rstd[:, None]
    if weight is not None:
        y = y * weight.reshape(-1).astype(np.float64)
    return y.astype(x.dtype).reshape(x.shape), rstd.astype(stat_dtype(x.dtype)).reshape(lead)


def rms_norm_backward(dy, x, weight, rstd, normalized_shape):
    """(dx, dweight); dweight is returned even without a weight (what a weight of ones would receive)."""
    normalized_shape = tuple(normalized_shape)
    x2, _ = _rows(x, normalized_shape)
    dy2, _ = _rows(dy, normalized_shape)
    xf, dyf = x2.astype(np.float64), dy2.astype(np.float64)
    r = rstd.reshape(-1, 1).astype(np.float64)
    xhat = xf * r
    g = dyf if weight is None else dyf * weight.reshape(-1).astype(np.float64)
    dx = r * (g - xhat * (g * xhat).mean(axis=1, keepdims=True)) if xf.shape[1] else g
    dweight = (dyf * xhat).sum(axis=0)
    return dx.astype(x.dtype).reshape(x.shape), dweight.astype(x.dtype).reshape(normalized_shape)

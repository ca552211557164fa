"""LayerNorm, forward and backward, as ``torch.nn.functional.layer_norm`` defines it.

Each row is the trailing ``normalized_shape`` block of ``x`` (``n`` elements); statistics are per row:

.. math::

    \\mu &= \\frac1n \\sum_j x_j, \\qquad \\sigma^2 = \\frac1n \\sum_j (x_j - \\mu)^2 \\quad\\text{(biased, two-pass)}\\\\
    r &= 1/\\sqrt{\\sigma^2 + \\epsilon}, \\qquad \\hat x_j = (x_j - \\mu)\\, r, \\qquad y_j = \\hat x_j\\, w_j + b_j

Backward, with :math:`g_j = \\partial L/\\partial y_j \\cdot w_j`:

.. math::

    \\frac{\\partial L}{\\partial x_j} &= r \\Big(g_j - \\frac1n\\sum_k g_k
        - \\hat x_j\\, \\frac1n \\sum_k g_k \\hat x_k\\Big)\\\\
    \\frac{\\partial L}{\\partial w} &= \\sum_{\\text{rows}} \\frac{\\partial L}{\\partial y}\\, \\hat x, \\qquad
    \\frac{\\partial L}{\\partial b} = \\sum_{\\text{rows}} \\frac{\\partial L}{\\partial y}

Symbols: :math:`\\epsilon` = ``eps``, :math:`w, b` = ``weight, bias`` (None: 1 and 0), :math:`\\mu` = ``mean``,
:math:`r` = ``rstd`` (PyTorch's names in ``torch.native_layer_norm``; pyopt's mean/rstd have the leading shape of
``x``, without trailing ones).
Convention: PyTorch's (biased variance, eps inside the square root). Never :math:`E[x^2] - E[x]^2`.
Precision: statistics in float64 for every input dtype; outputs rounded to ``x``'s dtype, statistics to
float32 for float16 input (else ``x``'s dtype).  The backward re-centres ``x - mean`` by its own row mean, which
is zero when ``mean`` is the row's exact mean and removes the bias of a mean rounded to float32 (a row
``1e4 + 1e-2 randn`` otherwise loses two digits of ``xhat``).
References: Ba, Kiros & Hinton, "Layer Normalization", 2016; ``aten/src/ATen/native/cpu/layer_norm_kernel.cpp``.

Bytes per element (fp32), the minimum: forward read x, write y = 8; backward read dy, x, write dx = 12
(plus the per-row statistics and the per-feature weight/bias/dweight/dbias, see :func:`bytes_moved`).
"""
import numpy as np


def stat_dtype(dtype):
    """The dtype of the saved statistics: float32 for half precision input, else the input's."""
    return np.dtype(np.float32) if np.dtype(dtype).itemsize < 4 else np.dtype(dtype)


def bytes_moved(rows, features, itemsize, *, which="forward", weight=True, bias=True):
    """Minimum bytes one call moves, for ``rows`` rows of ``features`` elements of ``itemsize`` bytes.

    ``which``: ``"forward"`` (read x, weight, bias; write y, mean, rstd), ``"backward"`` (read dy, x, weight,
    mean, rstd; write dx, dweight, dbias) or ``"both"`` (the sum: two calls).  Statistics are counted at the
    input's itemsize (float32 for float16 input would be 4 per row: negligible either way).
    """
    elems = rows * features
    fwd = itemsize * (2 * elems + features * (int(weight) + int(bias)) + 2 * rows)
    bwd = itemsize * (3 * elems + features * (int(weight) + 2) + 2 * rows)
    return {"forward": fwd, "backward": bwd, "both": fwd + bwd}[which]


def _rows(x, normalized_shape):
    """``x`` as a (rows, n) matrix, and the leading shape."""
    lead = x.shape[:x.ndim - len(normalized_shape)]
    return x.reshape(int(np.prod(lead, dtype=np.int64)), int(np.prod(normalized_shape, dtype=np.int64))), lead


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd); ``mean``/``rstd`` have shape ``x.shape[:-len(normalized_shape)]``."""
    normalized_shape = tuple(normalized_shape)
    x2, lead = _rows(x, normalized_shape)
    xf = x2.astype(np.float64)
    mean = xf.mean(axis=1) if xf.shape[1] else np.full(xf.shape[0], np.nan)
    xc = xf - mean[:, None]
    var = (xc * xc).mean(axis=1) if xf.shape[1] else np.full(xf.shape[0], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant row with eps = 0: NaN, as IEEE says
        rstd = 1.0 / np.sqrt(var + eps)
        y = xc * rstd[:, None]
    if weight is not None:
        y = y * weight.reshape(-1).astype(np.float64)
    if bias is not None:
        y = y + bias.reshape(-1).astype(np.float64)
    sd = stat_dtype(x.dtype)
    return y.astype(x.dtype).reshape(x.shape), mean.astype(sd).reshape(lead), rstd.astype(sd).reshape(lead)


def layer_norm_backward(dy, x, weight, mean, rstd, normalized_shape):
    """(dx, dweight, dbias) for ``y = layer_norm(x, normalized_shape, weight, bias)``; dweight and dbias are
    returned whether or not the forward had a weight and a bias (they are what a weight of ones and a bias of
    zeros would receive)."""
    normalized_shape = tuple(normalized_shape)
    x2, _ = _rows(x, normalized_shape)
    dy2, _ = _rows(dy, normalized_shape)
    n = x2.shape[1]
    xf, dyf = x2.astype(np.float64), dy2.astype(np.float64)
    r = rstd.reshape(-1, 1).astype(np.float64)
    xc = xf - mean.reshape(-1, 1).astype(np.float64)
    if n:
        xc = xc - xc.mean(axis=1, keepdims=True)  # zero for an exact mean; undoes a mean rounded to float32
    xhat = xc * r
    g = dyf if weight is None else dyf * weight.reshape(-1).astype(np.float64)
    if n:
        dx = r * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    else:
        dx = g
    dweight = (dyf * xhat).sum(axis=0)
    dbias = dyf.sum(axis=0)
    return (dx.astype(x.dtype).reshape(x.shape), dweight.astype(x.dtype).reshape(normalized_shape),
            dbias.astype(x.dtype).reshape(normalized_shape))

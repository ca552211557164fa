"""BatchNorm, forward (training and eval) and backward, as ``torch.nn.functional.batch_norm`` defines it.

Channel ``c`` is index ``c`` along ``axis`` (1 for NCHW, -1 for channels-last); its statistics run over the
``m`` values of every other axis (batch x spatial):

.. math::

    \\mu_c &= \\frac1m \\sum x, \\qquad \\sigma^2_c = \\frac1m \\sum (x - \\mu_c)^2
        \\quad\\text{(biased: used to normalize)}\\\\
    r_c &= 1/\\sqrt{\\sigma^2_c + \\epsilon}, \\qquad \\hat x = (x - \\mu_c)\\, r_c, \\qquad y = \\hat x\\, w_c + b_c\\\\
    \\text{running\\_mean} &\\leftarrow \\alpha\\, \\mu_c + (1 - \\alpha)\\, \\text{running\\_mean}\\\\
    \\text{running\\_var} &\\leftarrow \\alpha\\, \\sigma^2_c \\tfrac{m}{m-1} + (1 - \\alpha)\\, \\text{running\\_var}
        \\quad\\text{(unbiased)}

with :math:`\\alpha` = ``momentum``, or, for ``momentum=None``, :math:`1/t` where :math:`t` is
``num_batches_tracked`` after its increment (a cumulative average: the running stats are then the mean of the
batch statistics seen so far).  In eval mode (``training=False`` with running stats) :math:`\\mu, \\sigma^2` are the
running stats and nothing is updated; ``training=False`` without running stats uses the batch statistics (as
PyTorch does).  A batch of size 0 gives an empty output, NaN saved statistics, and leaves the running stats and
the counter unchanged (PyTorch #12013).

Backward, with :math:`\\bar{\\cdot}` the mean over the channel's m values:

.. math::

    \\frac{\\partial L}{\\partial x} &= w_c\\, r_c \\Big(\\frac{\\partial L}{\\partial y}
        - \\overline{\\frac{\\partial L}{\\partial y}} - \\hat x\\, \\overline{\\frac{\\partial L}{\\partial y}\\hat x}\\Big)
        \\quad\\text{(batch statistics)}, \\qquad
        w_c\\, r_c\\, \\frac{\\partial L}{\\partial y} \\quad\\text{(running statistics)}\\\\
    \\frac{\\partial L}{\\partial w_c} &= \\sum \\frac{\\partial L}{\\partial y}\\, \\hat x, \\qquad
    \\frac{\\partial L}{\\partial b_c} = \\sum \\frac{\\partial L}{\\partial y}

Symbols: :math:`\\epsilon` = ``eps``, :math:`w, b` = ``weight, bias`` (None: 1 and 0), :math:`\\mu` =
``save_mean``, :math:`r` = ``save_rstd`` (PyTorch's ``save_mean``/``save_invstd``).
Convention: PyTorch's (``aten/src/ATen/native/Normalization.cpp``, ``torch.nn.modules.batchnorm``), running stats
updated in float64 and stored in their dtype.  Statistics two-pass in float64; never :math:`E[x^2] - E[x]^2`.
As in LayerNorm, the training backward re-centres ``x - save_mean`` by its own channel mean (zero for an exact
mean), so a mean rounded to float32 does not bias :math:`\\hat x`.
References: Ioffe & Szegedy, "Batch Normalization", ICML 2015.

Bytes per element (fp32), the minimum: forward 8 (read x, write y), backward 12 (read dy and x, write dx), in
training and in eval.  Training needs each channel's finished statistics before its first output, so x (and dy)
are read twice; the second read costs no memory traffic when it finds the channel in cache, which the C kernels
arrange by working channel by channel whenever a channel's data fits in a quarter of the last-level cache.
"""
import numpy as np

from pyopt.reference.layer_norm import stat_dtype


def bytes_moved(numel, channels, itemsize, *, which="forward", training=True, weight=True, bias=True,
                running_stats=True):
    """Minimum bytes one call moves for ``numel`` elements in ``channels`` channels of ``itemsize`` bytes.

    ``which``: ``"forward"``, ``"backward"`` or ``"both"``.  Per element see the module docstring; per channel:
    weight/bias read, running stats read and written (training) or read (eval), save_mean/save_rstd written;
    backward reads weight, save_mean, save_rstd and writes dweight, dbias.
    """
    affine = int(weight) + int(bias)
    stats = (4 if training else 2) * int(running_stats)
    fwd = itemsize * (2 * numel + channels * (affine + stats + 2))
    bwd = itemsize * (3 * numel + channels * (int(weight) + 4))
    return {"forward": fwd, "backward": bwd, "both": fwd + bwd}[which]


def _channels_last(a, axis):
    """``a`` as a (m, C) matrix with the channel last (a copy when the layout needs one)."""
    moved = np.moveaxis(a, axis, -1)
    return moved.reshape(-1, a.shape[axis]), moved.shape


def _restore(matrix, moved_shape, axis):
    return np.moveaxis(matrix.reshape(moved_shape), -1, axis)


def momentum_factor(momentum, num_batches_tracked):
    """The weight of this batch in the running stats: ``momentum``, or ``1/t`` (cumulative average) for None."""
    return 1.0 / float(np.asarray(num_batches_tracked).reshape(-1)[0]) if momentum is None else float(momentum)


def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, *, training=False, momentum=0.1,
               eps=1e-5, axis=1, num_batches_tracked=None):
    """(y, save_mean, save_rstd); updates ``running_mean``, ``running_var`` and ``num_batches_tracked`` in place
    when training with running stats."""
    axis = axis % x.ndim
    xm, moved_shape = _channels_last(x, axis)
    xf = xm.astype(np.float64)
    m = xf.shape[0]
    use_batch_stats = training or running_mean is None
    if use_batch_stats:
        if m == 0:
            mean = var = np.full(xf.shape[1], np.nan)
        else:
            mean = xf.mean(axis=0)
            var = ((xf - mean) ** 2).mean(axis=0)
        if training and running_mean is not None and m > 0:
            if num_batches_tracked is not None:
                num_batches_tracked += 1
            a = momentum_factor(momentum, num_batches_tracked)
            rm, rv = running_mean.astype(np.float64), running_var.astype(np.float64)
            running_mean[...] = a * mean + (1 - a) * rm
            running_var[...] = a * (var * m / (m - 1)) + (1 - a) * rv
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant channel with eps = 0: NaN, as IEEE says
        rstd = 1.0 / np.sqrt(var + eps)
        y = (xf - mean) * rstd
    if weight is not None:
        y = y * weight.astype(np.float64)
    if bias is not None:
        y = y + bias.astype(np.float64)
    sd = stat_dtype(x.dtype)
    return _restore(y.astype(x.dtype), moved_shape, axis), mean.astype(sd), rstd.astype(sd)


def batch_norm_backward(dy, x, weight, save_mean, save_rstd, *, training=True, axis=1):
    """(dx, dweight, dbias).  ``training``: the forward normalized with batch statistics (training, or eval
    without running stats); else with running stats, passed here as save_mean/save_rstd."""
    axis = axis % x.ndim
    xm, moved_shape = _channels_last(x, axis)
    dym, _ = _channels_last(dy, axis)
    xf, dyf = xm.astype(np.float64), dym.astype(np.float64)
    r = save_rstd.astype(np.float64)
    xc = xf - save_mean.astype(np.float64)
    if training and xf.shape[0]:
        xc = xc - xc.mean(axis=0)  # zero for an exact mean; undoes a mean rounded to float32
    xhat = xc * r
    k = r if weight is None else r * weight.astype(np.float64)
    if training and xf.shape[0]:
        dx = k * (dyf - dyf.mean(axis=0) - xhat * (dyf * xhat).mean(axis=0))
    else:
        dx = k * dyf
    dweight, dbias = (dyf * xhat).sum(axis=0), dyf.sum(axis=0)
    return _restore(dx.astype(x.dtype), moved_shape, axis), dweight.astype(x.dtype), dbias.astype(x.dtype)

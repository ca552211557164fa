"""The maths of the norm kernels (LayerNorm, RMSNorm, BatchNorm), each piece written once and compiled for the CPU
drivers and for the CUDA kernels (:class:`pyopt.kernels._elementwise.Rule`).

What is shared is everything but the order of the reductions: the per-element terms a reduction adds, the
per-row / per-channel constants computed from the finished sums (mean, rstd, the backward's coefficients, the
running-stat update, Chan's merge of partial statistics), and the per-element outputs.  The reductions differ
by target, each in a fixed order that depends only on the shape (never on the thread count or launch timing):

- CPU (``lanes_*``): a row or run summed in float64 over 8 interleaved lanes (element ``i`` goes to lane
  ``i mod 8``, the tail to lane 0) combined in one fixed tree.  Independent lanes let LLVM pipeline the adds
  (a single float64 chain runs at a third of the speed) without ``fastmath`` reassociation, which would change
  the order with the vector width.
- GPU (``block_sum*``): each thread sums a strided subset of the row in float64 in index order, then a
  shared-memory tree (halving strides, ``syncthreads`` between levels) adds the threads' partials.  No warp
  shuffles: the CUDA simulator has none, and the simulator is what CI runs.

Precision follows ``csrc/norm_lanes.h``: every statistic accumulates in float64 for every dtype; values are
centred as ``(x - mean_hi) - mean_lo`` (:func:`split`, C's ``NORM_SPLIT``), so float32 rows far from zero keep the
precision of their spread; per-element outputs are computed in the arrays' dtype without FMA contraction.
``cast(value, proto)`` is C's ``(T)value`` (``proto``: a scalar of the arrays' dtype).  Numeric literals appear
only in float64 maths: a literal in float32 maths would promote it to float64.
"""
import numpy as np
from numba import float64

from pyopt.kernels import _launch
from pyopt.kernels._elementwise import PerTarget, rule, sqrt

cast = PerTarget(cpu=lambda: _launch.host_cast, cuda=_launch.device_cast, cudasim=_launch.device_cast)
# the block reductions' numba.cuda (the simulator swaps a module global of this name for its per-thread module)
cuda = PerTarget(cpu=lambda: None, cuda=_launch.cuda, cudasim=_launch.cuda)

ROW_BLOCKS = 32        # CPU: LayerNorm/RMSNorm backward row blocks (csrc/norm_common.h NORM_ROW_BLOCKS)
MIN_BLOCK_ROWS = 8     # CPU: rows per block at least (NORM_MIN_BLOCK_ROWS)
GPU_ROW_BLOCKS = 512   # GPU: at most this many row blocks, each one CUDA block (about 4 per SM of an H100)
GPU_MIN_BLOCK_ROWS = 4
NORM_THREADS = 256     # GPU threads per block of the norm kernels (a power of two: the tree halves it)


def row_blocks(rows, max_blocks, min_rows):
    """(rows per block, number of blocks) of a backward's dweight/dbias partials: a function of the shape only,
    so the order of every sum is fixed."""
    per = max(-(-rows // max_blocks), min_rows)
    return per, (-(-rows // per) if rows > 0 else 0)


def threads():
    """Threads per block of the norm kernels: small blocks under the simulator (a Python thread per thread)."""
    return _launch.SIM_THREADS if _launch.simulator() else NORM_THREADS


# ---------------------------------------------------------------- scalar maths

@rule
def split(value, proto):
    """C's ``NORM_SPLIT``: ``value`` (float64) as ``hi + lo`` with ``hi`` the value rounded to ``proto``'s dtype
    and ``lo`` the rounded remainder."""
    hi = cast(value, proto)
    lo = cast(value - np.float64(hi), proto)
    return hi, lo


@rule
def rstd_of(var, eps):
    """``1/sqrt(var + eps)`` in float64."""
    return 1.0 / sqrt(var + eps)


@rule
def chan_merge(n, mean, m2, nb, mean_b, m2_b):
    """Chan et al.'s merge of two partial statistics (count, mean, sum of squared deviations): the second block's
    ``(nb, mean_b, m2_b)`` into ``(n, mean, m2)``; exact for the first block (``n = 0``)."""
    total = n + nb
    delta = mean_b - mean
    return total, mean + delta * (nb / total), m2 + (m2_b + delta * delta * (n * nb / total))


@rule
def ln_backward_coef(sum_g, sum_gx, sum_x, mean_t, rstd_t, n):
    """A LayerNorm row's backward constants from its sums (``g = dy w``, ``xc = x - mean``): ``sum g``,
    ``sum g xc``, ``sum xc``.  ``sum xc / n`` is the residual of the stored (rounded) mean, added back so that
    ``xhat`` is centred on the row's exact mean.  Returns ``(mean_hi, mean_lo, mean(g), mean(g xhat))``."""
    r = np.float64(rstd_t)
    shift = sum_x / n
    sum_gxhat = r * (sum_gx - shift * sum_g)
    mh, ml = split(np.float64(mean_t) + shift, mean_t)
    return mh, ml, cast(sum_g / n, mean_t), cast(sum_gxhat / n, mean_t)


@rule
def rms_backward_coef(sum_gx, rstd_t, n):
    """An RMSNorm row's ``mean(g xhat) = rstd * sum(g x) / n``."""
    return cast(np.float64(rstd_t) * sum_gx / n, rstd_t)


@rule
def bn_forward_channel(c, C, mean, var, n, weight, bias, running_mean, running_var, momentum, eps, save_mean,
                       save_rstd, coef, update, has_w, has_b):
    """Channel ``c``'s statistics (float64, ``n`` values) into ``save_mean``/``save_rstd``, the running-stat
    update when ``update`` (ATen's rule: ``rm = a mean + (1 - a) rm``, ``rv = a var n/(n-1) + (1 - a) rv``,
    in float64), and the elementwise pass's constants ``coef[k C + c]``, k = 0..3: ``(mean_hi, mean_lo, rstd w,
    b)`` (a flat array: a 2-D view would need numba's reshape helper, which a CUDA kernel cannot link)."""
    if update:
        running_mean[c] = momentum * mean + (1.0 - momentum) * np.float64(running_mean[c])
        running_var[c] = momentum * (var * n / (n - 1.0)) + (1.0 - momentum) * np.float64(running_var[c])
    rstd = rstd_of(var, eps)
    save_mean[c] = mean
    save_rstd[c] = rstd
    mh, ml = split(mean, save_mean[c])
    coef[c] = mh
    coef[C + c] = ml
    coef[2 * C + c] = rstd * np.float64(weight[c]) if has_w else rstd
    coef[3 * C + c] = bias[c] if has_b else 0.0  # stored: rounded to coef's dtype, no float64 maths


@rule
def bn_k1(c, weight, save_rstd, has_w):
    """``w rstd`` of channel ``c`` in float64, the factor of ``dx`` (stored as ``coef[2 C + c]``; the sums pass
    writes ``dx = dy k1`` with it in eval mode)."""
    r = np.float64(save_rstd[c])
    return r * np.float64(weight[c]) if has_w else r


@rule
def bn_item(k, outer, inner, rows, length, slices):
    """The elements of BatchNorm's reduction item ``k`` of a channel: rows ``[o0, o1)`` of the
    ``[outer][C][inner]`` view and the inner range ``[i0, i1)`` (item ``k`` = row group ``k // slices``, inner
    slice ``k % slices``; channels-last: ``inner = length = slices = 1``).  A function of the shape only."""
    g = k // slices
    s = k - g * slices
    o0 = g * rows
    i0 = s * length
    return o0, min(o0 + rows, outer), i0, min(i0 + length, inner)


@rule
def bn_backward_channel(c, C, s_dy, s_dyx, s_x, count, save_mean, save_rstd, dweight, dbias, coef,
                        use_batch_stats):
    """Channel ``c``'s ``dweight = sum dy xhat``, ``dbias = sum dy`` from its sums (``xc = x - save_mean``), and
    the constants of the training pass ``coef[k C + c]``, k = 0..5: ``(mean_hi, mean_lo, w rstd, mean(dy),
    mean(dy xhat), rstd)``
    (``coef[2]`` from :func:`bn_k1`).  With batch statistics ``xhat`` is re-centred on the exact mean
    (the residual ``sum xc / count``), as in LayerNorm."""
    r = np.float64(save_rstd[c])
    shift = s_x / count if use_batch_stats and count > 0 else 0.0  # (no values: the empty sums)
    s_dyxhat = r * (s_dyx - shift * s_dy)
    dweight[c] = s_dyxhat
    dbias[c] = s_dy
    mh, ml = split(np.float64(save_mean[c]) + shift, save_rstd[c])
    coef[c] = mh
    coef[C + c] = ml
    if count > 0:  # (an empty batch has no elementwise pass)
        coef[3 * C + c] = s_dy / count
        coef[4 * C + c] = s_dyxhat / count
    coef[5 * C + c] = save_rstd[c]


# ---------------------------------------------------------------- per-element terms and outputs

@rule
def grad_terms(dy, w, x, j, mean, has_w):
    """Element ``j``'s terms of the backward sums: ``(g, g xc, xc)`` in float64, ``g = dy w`` (``dy`` without a
    weight), ``xc = x - mean``."""
    g = np.float64(dy[j])
    if has_w:
        g = g * np.float64(w[j])
    xc = np.float64(x[j]) - mean
    return g, g * xc, xc


@rule
def dot_term(dy, w, x, j, has_w):
    """Element ``j``'s term of RMSNorm's backward sum ``g x`` (float64)."""
    g = np.float64(dy[j])
    if has_w:
        g = g * np.float64(w[j])
    return g * np.float64(x[j])


@rule
def ln_apply(x, w, b, y, j, mh, ml, r, has_w, has_b):
    """``y = ((x - mean_hi) - mean_lo) rstd w + b`` at element ``j`` (LayerNorm forward)."""
    v = ((x[j] - mh) - ml) * r
    if has_w:
        v = v * w[j]
    if has_b:
        v = v + b[j]
    y[j] = v


@rule
def ln_backward_apply(dy, x, w, dx, j, mh, ml, r, mean_g, mean_gxhat, has_w):
    """LayerNorm's ``dx = ((g - mean(g)) - xhat mean(g xhat)) rstd`` at element ``j``; returns ``dy xhat``, the
    element's dweight term."""
    xhat = ((x[j] - mh) - ml) * r
    d = dy[j]
    g = d * w[j] if has_w else d
    dx[j] = ((g - mean_g) - xhat * mean_gxhat) * r
    return d * xhat


@rule
def rms_apply(x, w, y, j, r, has_w):
    """``y = x rstd w`` at element ``j`` (RMSNorm forward)."""
    v = x[j] * r
    if has_w:
        v = v * w[j]
    y[j] = v


@rule
def rms_backward_apply(dy, x, w, dx, j, r, mean_gxhat, has_w):
    """RMSNorm's ``dx = (g - xhat mean(g xhat)) rstd`` at element ``j``; returns ``dy xhat``."""
    xhat = x[j] * r
    d = dy[j]
    g = d * w[j] if has_w else d
    dx[j] = (g - xhat * mean_gxhat) * r
    return d * xhat


@rule
def bn_apply(x, y, i, mh, ml, alpha, beta):
    """BatchNorm forward at element ``i``: ``y = ((x - mean_hi) - mean_lo) alpha + beta``, ``alpha = rstd w``."""
    y[i] = ((x[i] - mh) - ml) * alpha + beta


@rule
def bn_backward_apply(dy, x, dx, i, mh, ml, k1, mean_dy, q, r):
    """BatchNorm training backward at element ``i``: ``dx = w rstd ((dy - mean(dy)) - xhat mean(dy xhat))``."""
    dx[i] = k1 * ((dy[i] - mean_dy) - (((x[i] - mh) - ml) * r) * q)


# ---------------------------------------------------------------- CPU reductions (fixed lanes)

@rule
def lanes_sum(x):
    """``sum x`` of a 1-D array in float64 over 8 lanes."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for k in range(n // 8):
        i = 8 * k
        a0 += np.float64(x[i])
        a1 += np.float64(x[i + 1])
        a2 += np.float64(x[i + 2])
        a3 += np.float64(x[i + 3])
        a4 += np.float64(x[i + 4])
        a5 += np.float64(x[i + 5])
        a6 += np.float64(x[i + 6])
        a7 += np.float64(x[i + 7])
    for i in range(n - n % 8, n):
        a0 += np.float64(x[i])
    return ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))


@rule
def lanes_sum_sq_dev(x, mean):
    """``sum (x - mean)^2`` in float64 over 8 lanes: the second pass of a two-pass variance."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for k in range(n // 8):
        i = 8 * k
        d0 = np.float64(x[i]) - mean
        d1 = np.float64(x[i + 1]) - mean
        d2 = np.float64(x[i + 2]) - mean
        d3 = np.float64(x[i + 3]) - mean
        d4 = np.float64(x[i + 4]) - mean
        d5 = np.float64(x[i + 5]) - mean
        d6 = np.float64(x[i + 6]) - mean
        d7 = np.float64(x[i + 7]) - mean
        a0 += d0 * d0
        a1 += d1 * d1
        a2 += d2 * d2
        a3 += d3 * d3
        a4 += d4 * d4
        a5 += d5 * d5
        a6 += d6 * d6
        a7 += d7 * d7
    for i in range(n - n % 8, n):
        d = np.float64(x[i]) - mean
        a0 += d * d
    return ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))


@rule
def lanes_sum_sq(x):
    """``sum x^2`` in float64 over 8 lanes (RMSNorm)."""
    return lanes_sum_sq_dev(x, 0.0)


@rule
def lanes_grad_sums(dy, w, x, mean, has_w):
    """The three sums of :func:`grad_terms` over a row, each over 4 lanes (12 independent chains)."""
    n = x.shape[0]
    g0 = g1 = g2 = g3 = p0 = p1 = p2 = p3 = c0 = c1 = c2 = c3 = 0.0
    for k in range(n // 4):
        i = 4 * k
        g, p, c = grad_terms(dy, w, x, i, mean, has_w)
        g0 += g
        p0 += p
        c0 += c
        g, p, c = grad_terms(dy, w, x, i + 1, mean, has_w)
        g1 += g
        p1 += p
        c1 += c
        g, p, c = grad_terms(dy, w, x, i + 2, mean, has_w)
        g2 += g
        p2 += p
        c2 += c
        g, p, c = grad_terms(dy, w, x, i + 3, mean, has_w)
        g3 += g
        p3 += p
        c3 += c
    for i in range(n - n % 4, n):
        g, p, c = grad_terms(dy, w, x, i, mean, has_w)
        g0 += g
        p0 += p
        c0 += c
    return (g0 + g2) + (g1 + g3), (p0 + p2) + (p1 + p3), (c0 + c2) + (c1 + c3)


@rule
def lanes_dot(dy, w, x, has_w):
    """``sum g x`` of :func:`dot_term` over a row, 8 lanes."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for k in range(n // 8):
        i = 8 * k
        a0 += dot_term(dy, w, x, i, has_w)
        a1 += dot_term(dy, w, x, i + 1, has_w)
        a2 += dot_term(dy, w, x, i + 2, has_w)
        a3 += dot_term(dy, w, x, i + 3, has_w)
        a4 += dot_term(dy, w, x, i + 4, has_w)
        a5 += dot_term(dy, w, x, i + 5, has_w)
        a6 += dot_term(dy, w, x, i + 6, has_w)
        a7 += dot_term(dy, w, x, i + 7, has_w)
    for i in range(n - n % 8, n):
        a0 += dot_term(dy, w, x, i, has_w)
    return ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))


# ---------------------------------------------------------------- GPU reductions (shared-memory tree)

@rule
def block_sum(shared, value):
    """The sum over the block of each thread's ``value`` (float64): a tree over ``shared`` (``blockDim.x``
    float64, a power of two), the same order on every launch.  Every thread gets the total."""
    t = cuda.threadIdx.x
    shared[t] = value
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            shared[t] += shared[t + s]
        cuda.syncthreads()
        s = s // 2
    total = shared[0]
    cuda.syncthreads()  # shared is reused by the next reduction
    return total


@rule
def block_sum3(shared, a, b, c):
    """:func:`block_sum` of three values at once (``shared``: 3 x ``blockDim.x``)."""
    t = cuda.threadIdx.x
    shared[0, t] = a
    shared[1, t] = b
    shared[2, t] = c
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            shared[0, t] += shared[0, t + s]
            shared[1, t] += shared[1, t + s]
            shared[2, t] += shared[2, t + s]
        cuda.syncthreads()
        s = s // 2
    ta, tb, tc = shared[0, 0], shared[1, 0], shared[2, 0]
    cuda.syncthreads()
    return ta, tb, tc


FLOAT64 = float64  # the shared arrays' dtype, for the kernel modules

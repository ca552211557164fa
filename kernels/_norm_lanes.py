"""The CPU norm kernels' row sums of float32 data: ``csrc/norm_lanes.h``'s float32-chunk algorithm in Numba.

A float32 run of ``n`` elements is summed by chunks of ``CHUNK`` = 128 elements over ``LANES`` = 16 lanes
(element ``i`` of a chunk goes to lane ``i mod 16``): each lane's float32 sum of its 8 terms in index order is
added into that lane's float64 accumulator.  A last partial chunk sums its whole groups of 16 the same way (fewer
terms per lane), and the ``n mod 16`` values after it go to float64 lanes 0, 1, ... directly.  The 16 float64
lanes meet in C's fixed tree (``norm_combine_lanes``), so every sum's order depends on the length alone.  The tail
is where C differs: for ``n >= 16`` its centred and gradient sums take the last 16 values as one masked float32
vector (value ``n - 16 + k`` to lane ``k``), so C and numba norms agree within the tolerance table, not bit for
bit.  (numba doing the same gave C's bits, but added half again to the norm drivers' compile time.)

A chunk's rounding is that of a float32 sum of at most 8 terms (about 5e-7 of their size), so statistics are
centred as in C: a pass over ``d = (x - s_hi) - s_lo`` (float32, same chunking; :func:`_norm_rules.split`)
around a shift ``s``, the mean of the first 16 values (:func:`shift_f32`), gives ``sum d`` and ``sum d^2``, with
which the mean is ``s + sum d / n`` and the variance ``sum d^2 / n - (sum d / n)^2``; when ``s`` lay more than
sqrt(``SHIFT_FAR``) standard deviations from the mean, a second pass around the mean replaces it.  That is the
accuracy of a float64 two-pass where it matters (rows far from zero), at a quarter of the instructions of
widening every element to float64, in one pass over the row for most rows.

Speed comes from the shape of the lane loop: each lane's 8 terms are straight-line code inside a loop over the
16 lanes, whose iterations are independent, which LLVM's SLP vectorizer turns into two 8-wide float32 vectors
without reassociating anything (no ``fastmath``); a loop over a row with 16 scalar accumulators stays scalar.
The comment above :func:`_offset` says how a partial chunk keeps that shape.

Each ``acc_*`` function adds into float64 lane rows of ``acc`` (``[k][16]``, one per sum) and leaves them there,
so BatchNorm sums a channel's runs into one set of lanes and combines them once; the ``*_f32`` row functions
start from zero.  Work arrays come from :func:`workspace`, one per block of rows or channels (an allocation per
row would cost more than a row's sums).  The ``*_f64`` functions are the float64 rows' exact float64 maths
(:mod:`_norm_rules`'s ``lanes_*``) with the same signatures; a driver picks one by an ``if f32:`` on a constant
of its closure, which numba prunes, and never by closing over the chosen function: a dispatcher pickles
differently in every process, and the closure's pickle is part of numba's on-disk cache key
(:class:`pyopt.kernels._launch.CpuDrivers` refuses such closures).
The passes that a streaming call's rows begin with take an ``ahead`` row and prefetch it a chunk at a time
(:func:`pyopt.kernels._norm_stream.prefetch`; the row itself where there is nothing to fetch).
"""
import numba
import numpy as np

from pyopt.kernels import _launch
from pyopt.kernels import _norm_rules as nr
from pyopt.kernels._norm_stream import prefetch

LANES = 16
CHUNK = 128  # csrc/norm_common.h NORM_CHUNK: 8 terms per lane
SHIFT_FAR = 3.0  # csrc/norm_common.h NORM_SHIFT_FAR: how far (in variances) a shift may lie from the mean
SUMS = 3     # lane rows of a workspace: the most sums one pass takes (the backward's g, g xc, xc)

_jit = numba.njit(inline="always", **{k: v for k, v in _launch.CPU_OPTIONS.items() if k != "cache"})
_split = nr.split.cpu
_sum64 = nr.lanes_sum.cpu
_sum_sq_dev64 = nr.lanes_sum_sq_dev.cpu
_sum_sq64 = nr.lanes_sum_sq.cpu
_grad_sums64 = nr.lanes_grad_sums.cpu
_dot64 = nr.lanes_dot.cpu


@_jit
def workspace():
    """``(acc, part)``: float64 lane rows ``[SUMS][LANES]`` (zeroed) and float32 partial-chunk rows."""
    return np.zeros((SUMS, LANES)), np.empty((SUMS, LANES), np.float32)


@_jit
def clear(acc):
    """Zeroes every lane row of ``acc``."""
    for k in range(acc.shape[0]):
        for j in range(LANES):
            acc[k, j] = 0.0


@_jit
def total(lanes):
    """The 16 float64 lanes of one row of ``acc`` combined in C's fixed tree (``norm_combine_lanes``)."""
    a0, a1, a2, a3 = lanes[0] + lanes[8], lanes[1] + lanes[9], lanes[2] + lanes[10], lanes[3] + lanes[11]
    a4, a5, a6, a7 = lanes[4] + lanes[12], lanes[5] + lanes[13], lanes[6] + lanes[14], lanes[7] + lanes[15]
    return ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))


# ---------------------------------------------------------------- float32 accumulations
#
# A chunk is one pass of a ``*_lanes`` function: a loop over the 16 lanes whose body is the lane's 8 terms as
# straight-line code, term t (0..7) read from group t of the chunk.  A partial chunk of ``groups`` < 8 groups (a
# row's last) runs the same body: its terms past the last group read that group again (:func:`_offset`) and are
# cleared (:func:`_kept`), so they add +0 and its sums are those of its groups alone.  The lane sums go to a
# float32 work row and a second lane loop adds them into the float64 lanes: added straight into the float64
# lanes, the body is vectorized by LLVM's SLP vectorizer at the width of four doubles (its float32 ops on
# half-empty xmm registers); stored as float32 it is 8-wide ymm code, as C's.  A partial chunk written as a loop
# over its groups adding into the work row is not vectorized at all.  Each chunk's arrays are views that start
# at the chunk and its offsets are known not to be negative (the ``max`` in :func:`_offset`): numba wraps
# negative indices, and an index LLVM cannot prove non-negative turns the loads into one-by-one gathers.  One
# body serves whole and partial chunks: a second copy specialized for whole chunks was no faster and doubled
# the compile time.  BatchNorm's numba forward at 64x256x14x14 (2 threads, paired calls against the previous
# lanes in one process): 0.77x the time.

@_jit
def _offset(t, groups):
    """Where term ``t`` (1..7) of a lane reads in a chunk of ``groups`` groups of 16: its group, or for a term
    past the last group the last group again (its value is then cleared: ``t >= groups``)."""
    return LANES * min(t, max(groups - 1, 0))  # max: LLVM then knows the index is not negative


@_jit
def _flush(acc_row, part_row):
    """``acc_row[lane] += part_row[lane]`` widened to float64, for the 16 lanes."""
    for lane in range(LANES):
        acc_row[lane] += np.float64(part_row[lane])


@_jit
def _kept(v, keep):
    """``v``, or float32 zero where it is not kept: a select on a value loaded either way (a load under the
    condition would keep the chunk's body from vectorizing)."""
    return v if keep else np.float32(0)


@_jit
def _kept2(pair, keep):
    """:func:`_kept` of both values of a pair."""
    return _kept(pair[0], keep), _kept(pair[1], keep)


@_jit
def _grad_terms(dy, w, x, j, mh, ml, has_w):
    """Element ``j``'s float32 ``g = dy w`` (``dy`` without a weight) and ``xc = (x - mh) - ml``."""
    g = dy[j] * w[j] if has_w else dy[j]
    return g, (x[j] - mh) - ml


@_jit
def _dot_term(dy, w, x, j, has_w):
    """Element ``j``'s float32 ``g x``."""
    g = dy[j] * w[j] if has_w else dy[j]
    return g * x[j]


@_jit
def _centred_lanes(x, mh, ml, groups, s_part, q_part):
    """One chunk of :func:`acc_centred` (``x`` from the chunk on): ``s_part``, ``q_part`` = the lanes' float32 sums of
    ``d``, ``d^2``."""
    o1, o2, o3, o4 = _offset(1, groups), _offset(2, groups), _offset(3, groups), _offset(4, groups)
    o5, o6, o7 = _offset(5, groups), _offset(6, groups), _offset(7, groups)
    for lane in range(LANES):
        j = lane
        d = (x[j] - mh) - ml
        s, q = d, d * d
        d = _kept((x[j + o1] - mh) - ml, groups > 1)
        s, q = s + d, q + d * d
        d = _kept((x[j + o2] - mh) - ml, groups > 2)
        s, q = s + d, q + d * d
        d = _kept((x[j + o3] - mh) - ml, groups > 3)
        s, q = s + d, q + d * d
        d = _kept((x[j + o4] - mh) - ml, groups > 4)
        s, q = s + d, q + d * d
        d = _kept((x[j + o5] - mh) - ml, groups > 5)
        s, q = s + d, q + d * d
        d = _kept((x[j + o6] - mh) - ml, groups > 6)
        s, q = s + d, q + d * d
        d = _kept((x[j + o7] - mh) - ml, groups > 7)
        s_part[lane], q_part[lane] = s + d, q + d * d


@_jit
def acc_centred(x, mh, ml, acc, part, ahead):
    """``acc[0] +=`` the lanes of ``sum d``, ``acc[1] +=`` those of ``sum d^2``, ``d = (x - mh) - ml`` in
    float32: whole chunks, then the partial chunk, then each of the last ``n mod 16`` values widened to float64
    into lane 0, 1, ... (the tail's ``d`` widened after the float32 subtraction, as C).  Each group
    of 16 prefetches the same span of ``ahead`` (the row read next; C's ``norm_centred_sums_f32_acc``), so its
    reads overlap this pass."""
    n = x.shape[0]
    s_acc, q_acc, s_part, q_part = acc[0], acc[1], part[0], part[1]
    i = 0
    while n - i >= LANES:
        groups = min((n - i) // LANES, CHUNK // LANES)
        for k in range(0, groups * LANES, LANES):
            prefetch(ahead, i + k)
        _centred_lanes(x[i:], mh, ml, groups, s_part, q_part)
        _flush(s_acc, s_part)
        _flush(q_acc, q_part)
        i += groups * LANES
    for lane in range(n - i):
        d = np.float64((x[i + lane] - mh) - ml)
        s_acc[lane] += d
        q_acc[lane] += d * d


@_jit
def _sum_sq_lanes(x, groups, s_part):
    """One chunk of :func:`acc_sum_sq` (``x`` from the chunk on): ``s_part`` = the lanes' float32 sums of ``x^2``."""
    o1, o2, o3, o4 = _offset(1, groups), _offset(2, groups), _offset(3, groups), _offset(4, groups)
    o5, o6, o7 = _offset(5, groups), _offset(6, groups), _offset(7, groups)
    for lane in range(LANES):
        j = lane
        v = x[j]
        s = v * v
        v = _kept(x[j + o1], groups > 1)
        s += v * v
        v = _kept(x[j + o2], groups > 2)
        s += v * v
        v = _kept(x[j + o3], groups > 3)
        s += v * v
        v = _kept(x[j + o4], groups > 4)
        s += v * v
        v = _kept(x[j + o5], groups > 5)
        s += v * v
        v = _kept(x[j + o6], groups > 6)
        s += v * v
        v = _kept(x[j + o7], groups > 7)
        s_part[lane] = s + v * v


@_jit
def acc_sum_sq(x, acc, part, ahead):
    """``acc[0] +=`` the lanes of ``sum x^2`` by chunks as :func:`acc_centred`, the last ``n mod 16`` values
    squared in float64 into lanes 0, 1, ... (C's ``norm_sum_sq_f32``), prefetching ``ahead`` as
    :func:`acc_centred` does."""
    n = x.shape[0]
    s_acc, s_part = acc[0], part[0]
    i = 0
    while n - i >= LANES:
        groups = min((n - i) // LANES, CHUNK // LANES)
        for k in range(0, groups * LANES, LANES):
            prefetch(ahead, i + k)
        _sum_sq_lanes(x[i:], groups, s_part)
        _flush(s_acc, s_part)
        i += groups * LANES
    for lane in range(n - i):
        v = np.float64(x[i + lane])
        s_acc[lane] += v * v


@_jit
def _grad_lanes(dy, w, x, mh, ml, has_w, groups, g_part, p_part, c_part):
    """One chunk of :func:`acc_grad` (the rows from the chunk on): the lanes' float32 sums of ``g``, ``g xc``, ``xc``."""
    o1, o2, o3, o4 = _offset(1, groups), _offset(2, groups), _offset(3, groups), _offset(4, groups)
    o5, o6, o7 = _offset(5, groups), _offset(6, groups), _offset(7, groups)
    for lane in range(LANES):
        j = lane
        g, xc = _grad_terms(dy, w, x, j, mh, ml, has_w)
        sg, sp, sc = g, g * xc, xc
        g, xc = _kept2(_grad_terms(dy, w, x, j + o1, mh, ml, has_w), groups > 1)
        sg, sp, sc = sg + g, sp + g * xc, sc + xc
        g, xc = _kept2(_grad_terms(dy, w, x, j + o2, mh, ml, has_w), groups > 2)
        sg, sp, sc = sg + g, sp + g * xc, sc + xc
        g, xc = _kept2(_grad_terms(dy, w, x, j + o3, mh, ml, has_w), groups > 3)
        sg, sp, sc = sg + g, sp + g * xc, sc + xc
        g, xc = _kept2(_grad_terms(dy, w, x, j + o4, mh, ml, has_w), groups > 4)
        sg, sp, sc = sg + g, sp + g * xc, sc + xc
        g, xc = _kept2(_grad_terms(dy, w, x, j + o5, mh, ml, has_w), groups > 5)
        sg, sp, sc = sg + g, sp + g * xc, sc + xc
        g, xc = _kept2(_grad_terms(dy, w, x, j + o6, mh, ml, has_w), groups > 6)
        sg, sp, sc = sg + g, sp + g * xc, sc + xc
        g, xc = _kept2(_grad_terms(dy, w, x, j + o7, mh, ml, has_w), groups > 7)
        g_part[lane], p_part[lane], c_part[lane] = sg + g, sp + g * xc, sc + xc


@_jit
def acc_grad(dy, w, x, mh, ml, has_w, acc, part):
    """``acc[0..2] +=`` the lanes of ``sum g``, ``sum g xc``, ``sum xc`` with ``g = dy w`` (``dy`` without a
    weight) and ``xc = (x - mh) - ml``, float32 inside a chunk; the tail in float64 with ``xc = x - (mh + ml)``
    (C's ``norm_grad_sums_f32_acc``, but for its masked tail)."""
    n = x.shape[0]
    g_acc, p_acc, c_acc, g_part, p_part, c_part = acc[0], acc[1], acc[2], part[0], part[1], part[2]
    i = 0
    while n - i >= LANES:
        groups = min((n - i) // LANES, CHUNK // LANES)
        _grad_lanes(dy[i:], w[i:], x[i:], mh, ml, has_w, groups, g_part, p_part, c_part)
        _flush(g_acc, g_part)
        _flush(p_acc, p_part)
        _flush(c_acc, c_part)
        i += groups * LANES
    mean = np.float64(mh) + np.float64(ml)
    for lane in range(n - i):
        k = i + lane
        g = np.float64(dy[k]) * np.float64(w[k]) if has_w else np.float64(dy[k])
        xc = np.float64(x[k]) - mean
        g_acc[lane] += g
        p_acc[lane] += g * xc
        c_acc[lane] += xc


@_jit
def _dot_lanes(dy, w, x, has_w, groups, s_part):
    """One chunk of :func:`acc_dot` (the rows from the chunk on): the lanes' float32 sums of ``g x``."""
    o1, o2, o3, o4 = _offset(1, groups), _offset(2, groups), _offset(3, groups), _offset(4, groups)
    o5, o6, o7 = _offset(5, groups), _offset(6, groups), _offset(7, groups)
    for lane in range(LANES):
        j = lane
        s = _dot_term(dy, w, x, j, has_w)
        s += _kept(_dot_term(dy, w, x, j + o1, has_w), groups > 1)
        s += _kept(_dot_term(dy, w, x, j + o2, has_w), groups > 2)
        s += _kept(_dot_term(dy, w, x, j + o3, has_w), groups > 3)
        s += _kept(_dot_term(dy, w, x, j + o4, has_w), groups > 4)
        s += _kept(_dot_term(dy, w, x, j + o5, has_w), groups > 5)
        s += _kept(_dot_term(dy, w, x, j + o6, has_w), groups > 6)
        s_part[lane] = s + _kept(_dot_term(dy, w, x, j + o7, has_w), groups > 7)


@_jit
def acc_dot(dy, w, x, has_w, acc, part):
    """``acc[0] +=`` the lanes of ``sum g x``, ``g = dy w`` (RMSNorm's backward), by chunks as
    :func:`acc_sum_sq`, the last ``n mod 16`` values in float64 (C's ``norm_grad_dot_f32``)."""
    n = x.shape[0]
    s_acc, s_part = acc[0], part[0]
    i = 0
    while n - i >= LANES:
        groups = min((n - i) // LANES, CHUNK // LANES)
        _dot_lanes(dy[i:], w[i:], x[i:], has_w, groups, s_part)
        _flush(s_acc, s_part)
        i += groups * LANES
    for lane in range(n - i):
        k = i + lane
        g = np.float64(dy[k]) * np.float64(w[k]) if has_w else np.float64(dy[k])
        s_acc[lane] += g * np.float64(x[k])


# ---------------------------------------------------------------- rows: float32 and float64 variants

@_jit
def shift_f32(x):
    """C's ``norm_shift_f32``: the mean of a float32 run's first min(n, 16) values, in float32 (scaled before
    adding, so no overflow near FLT_MAX), the shift of the one-pass centred sums."""
    n = x.shape[0]
    s = np.float32(0)
    if n >= 16:
        q = np.float32(0.0625)
        v0, v1, v2, v3 = x[0] * q + x[8] * q, x[1] * q + x[9] * q, x[2] * q + x[10] * q, x[3] * q + x[11] * q
        v4, v5, v6, v7 = x[4] * q + x[12] * q, x[5] * q + x[13] * q, x[6] * q + x[14] * q, x[7] * q + x[15] * q
        return ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))
    for i in range(n):
        s += x[i] / np.float32(n)
    return s


@_jit
def centred_stats(shift_sum, sq_sum, n, centre):
    """(mean, variance, far) from the centred sums around ``centre``: far when the centre lay more than
    sqrt(SHIFT_FAR) standard deviations from the mean (sum again around the mean then)."""
    shift = shift_sum / n
    var = sq_sum / n - shift * shift
    return centre + shift, var, shift * shift > SHIFT_FAR * var


@_jit
def mean_var_f32(x, acc, part, ahead):
    """A float32 row's mean and biased variance (float64), as C's ``norm_mean_var``: one centred pass around
    :func:`shift_f32`, a second around the mean so found only when that shift was far (the variance clamped at
    0); the centred pass prefetches the row ``ahead``."""
    mean, var, far = _centred_pass(x, np.float64(shift_f32(x)), acc, part, ahead)
    if far:  # (straight-line code: a loop with a break here came out wrong inside a parallel driver)
        mean, var, far = _centred_pass(x, mean, acc, part, ahead)
    return mean, max(var, 0.0)


@_jit
def _centred_pass(x, centre, acc, part, ahead):
    """:func:`centred_stats` of one centred pass over ``x`` around ``centre``."""
    mh, ml = _split(centre, np.float32(0))
    clear(acc)
    acc_centred(x, mh, ml, acc, part, ahead)
    return centred_stats(total(acc[0]), total(acc[1]), x.shape[0], centre)


@_jit
def mean_var_f64(x, acc, part, ahead):
    """A float64 row's mean and biased variance: the exact two-pass in float64 lanes (``ahead`` unused: the
    signature of :func:`mean_var_f32`)."""
    n = x.shape[0]
    m = _sum64(x) / n
    return m, _sum_sq_dev64(x, m) / n


@_jit
def sum_sq_f32(x, acc, part, ahead):
    """``sum x^2`` of a float32 row (float64), prefetching the row ``ahead``."""
    clear(acc)
    acc_sum_sq(x, acc, part, ahead)
    return total(acc[0])


@_jit
def sum_sq_f64(x, acc, part, ahead):
    """``sum x^2`` of a float64 row (``ahead`` unused)."""
    return _sum_sq64(x)


@_jit
def grad_sums_f32(dy, w, x, mean, has_w, acc, part):
    """The backward's ``(sum g, sum g xc, sum xc)`` of a float32 row, ``xc`` = x - mean (float64 ``mean``
    split into float32 ``hi + lo``)."""
    mh, ml = _split(mean, np.float32(0))
    clear(acc)
    acc_grad(dy, w, x, mh, ml, has_w, acc, part)
    return total(acc[0]), total(acc[1]), total(acc[2])


@_jit
def grad_sums_f64(dy, w, x, mean, has_w, acc, part):
    """The backward's sums of a float64 row in float64 lanes."""
    return _grad_sums64(dy, w, x, mean, has_w)


@_jit
def dot_f32(dy, w, x, has_w, acc, part):
    """``sum g x`` of a float32 row (RMSNorm's backward)."""
    clear(acc)
    acc_dot(dy, w, x, has_w, acc, part)
    return total(acc[0])


@_jit
def dot_f64(dy, w, x, has_w, acc, part):
    """``sum g x`` of a float64 row."""
    return _dot64(dy, w, x, has_w)


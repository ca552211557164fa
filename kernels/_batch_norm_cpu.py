"""BatchNorm's CPU drivers in Numba (:mod:`pyopt.kernels.batch_norm` has the maths, the host entry points and the
CUDA kernels; C: ``csrc/batch_norm.c``).  ``x`` arrives as ``[outer][C][inner]``.

Two paths, as in C, each bitwise the same for any thread count:

- **Channel path** (planar layouts with batch statistics whose channel fits in a quarter of the cache, and at
  least ``MIN_TASKS`` channels: :func:`by_channel`): one parallel item per channel computes the channel's
  statistics over its runs and at once normalizes them (forward) or forms ``dx`` (backward), so the later passes
  over the channel read cache, not memory.  A float32 channel's runs are summed into one set of float32-chunk
  lanes (:mod:`pyopt.kernels._norm_lanes`: the centred pass around a shift that gives the mean and the
  variance, twice when the shift was far; the backward's three sums), combined once; float64 channels add their runs' float64 lane sums.
- **Tiled path** (everything else): two-stage reductions over reduction items fixed by the shape
  (:func:`pyopt.kernels.batch_norm.geometry`): stage one a ``prange`` over items into per-item partials, stage
  two a channel's partials combined in item order (Chan's merge; plain sums in the backward), then the
  elementwise pass.

Calls larger than half the cache stream their outputs (:mod:`pyopt.kernels._norm_stream`), and the channel path's
first pass prefetches the runs ``AHEAD`` runs ahead, as C does.
"""
import numba
import numpy as np

from pyopt.kernels import _launch
from pyopt.kernels import _norm_lanes as lanes
from pyopt.kernels import _norm_rules as nr
from pyopt.kernels._norm_stream import cache_bytes, prefetch_lines, stream_copy, stream_fence, stream_outputs

_sum = nr.lanes_sum.cpu
_sum_sq_dev = nr.lanes_sum_sq_dev.cpu
_grad_sums = nr.lanes_grad_sums.cpu
_grad_terms = nr.grad_terms.cpu
_item = nr.bn_item.cpu
_merge = nr.chan_merge.cpu
_split = nr.split.cpu
_forward_channel = nr.bn_forward_channel.cpu
_backward_channel = nr.bn_backward_channel.cpu
_k1 = nr.bn_k1.cpu
_apply = nr.bn_apply.cpu
_backward_apply = nr.bn_backward_apply.cpu
# Channel path: a channel's runs lie a whole [C][inner] plane apart, so a short run ends before the hardware
# prefetcher locks on; the first pass prefetches the start of the run AHEAD runs ahead (csrc/batch_norm.c BN_AHEAD).
AHEAD = 4
AHEAD_LINES = 32
# Planar runs shorter than this are stored plainly even in a streaming call: each run's head and tail before and
# after its whole lines are plain stores, and on 14 x 14 runs streaming was slower (64x256x14x14, 2 threads:
# 4.7 -> 5.0 ms forward, 4.2 -> 4.9 ms backward); on 56 x 56 runs it is faster (3.9 -> 3.5, 4.7 -> 4.1).
STREAM_MIN_RUN = 1024
MIN_TASKS = 8  # channels the channel path needs (csrc/batch_norm.c BN_MIN_TASKS)
APPLY_BLOCK = 4096  # tiled path: elements (whole runs, slices or rows) per parallel item of the elementwise pass


def by_channel(outer, channels, inner, itemsize, n_inputs):
    """Whether a call with batch statistics takes the channel path: planar, a channel's inputs within a quarter
    of the cache the C kernels plan with (:func:`pyopt.kernels._norm_stream.cache_bytes`), and ``MIN_TASKS``
    channels or more (C's ``bn_by_channel``).  A fixed count, not the threads or cores: the two paths sum in
    different orders, so the choice must depend on the shape alone."""
    return (inner > 1 and channels >= MIN_TASKS
            and outer * inner * itemsize * n_inputs <= cache_bytes() // 4)


@numba.njit(inline="always", **{k: v for k, v in _launch.CPU_OPTIONS.items() if k != "cache"})
def _channel_centred(x, c, centre, acc, part, fetch):
    """(mean, variance, far) of channel ``c`` of float32 ``x`` from one centred pass over its runs around
    ``centre`` (:func:`pyopt.kernels._norm_lanes.centred_stats`); ``fetch``: prefetch the runs ahead."""
    outer = x.shape[0]
    mh, ml = _split(centre, np.float32(0))
    lanes.clear(acc)
    for o in range(outer):
        if fetch and o + AHEAD < outer:
            prefetch_lines(x[o + AHEAD, c], AHEAD_LINES)
        lanes.acc_centred(x[o, c], mh, ml, acc, part, x[o, c])
    return lanes.centred_stats(lanes.total(acc[0]), lanes.total(acc[1]), np.float64(outer * x.shape[2]), centre)


def streams(inner, out_bytes, n_arrays):
    """Whether a call streams its outputs (``n_arrays`` arrays of ``out_bytes`` touched): more than half the cache,
    unless its planar runs are shorter than ``STREAM_MIN_RUN``."""
    return stream_outputs(n_arrays * out_bytes) and (inner == 1 or inner >= STREAM_MIN_RUN)


def _make_forward_cpu(loop, stamp, channel, f32, planar, has_w, has_b):
    if channel:
        return _make_channel_forward(loop, stamp, f32, has_w, has_b)
    return _make_tiled_forward(loop, stamp, planar, has_w, has_b)


def _make_backward_cpu(loop, stamp, channel, f32, planar, has_w):
    if channel:
        return _make_channel_backward(loop, stamp, f32, has_w)
    return _make_tiled_backward(loop, stamp, planar, has_w)


# ---------------------------------------------------------------- channel path

def _make_channel_forward(loop, stamp, f32, has_w, has_b):
    def batch_norm_channel_cpu(x, w, b, running_mean, running_var, y, save_mean, save_rstd, coef, update,
                               momentum, eps, stream):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        outer, C, inner = x.shape
        n = np.float64(outer * inner)
        for c in loop(C):
            if f32:
                acc, part = lanes.workspace()  # as LayerNorm's rows (lanes.mean_var_f32), over the runs
                mean, var, far = _channel_centred(x, c, np.float64(lanes.shift_f32(x[0, c])), acc, part, True)
                if far:
                    mean, var, far = _channel_centred(x, c, mean, acc, part, False)
                var = max(var, 0.0)
            else:
                s = 0.0
                for o in range(outer):
                    if o + AHEAD < outer:
                        prefetch_lines(x[o + AHEAD, c], AHEAD_LINES)
                    s += _sum(x[o, c])
                mean = s / n
                q = 0.0
                for o in range(outer):
                    q += _sum_sq_dev(x[o, c], mean)
                var = q / n
            _forward_channel(c, C, mean, var, n, w, b, running_mean, running_var, momentum, eps, save_mean,
                             save_rstd, coef, update, has_w, has_b)
            mh, ml, alpha, beta = coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c]
            if stream:
                line = np.empty(inner, y.dtype)
                for o in range(outer):
                    xs = x[o, c]
                    for i in range(inner):
                        _apply(xs, line, i, mh, ml, alpha, beta)
                    stream_copy(y[o, c], line)
                stream_fence()
            else:  # a loop of its own: storing through `line if stream else y[o, c]` cost 10% at 64x256x14x14
                for o in range(outer):
                    xs, ys = x[o, c], y[o, c]
                    for i in range(inner):
                        _apply(xs, ys, i, mh, ml, alpha, beta)

    return batch_norm_channel_cpu


def _make_channel_backward(loop, stamp, f32, has_w):
    def batch_norm_channel_backward_cpu(dy, x, w, save_mean, save_rstd, dx, dweight, dbias, coef, stream):
        _ = stamp
        outer, C, inner = x.shape
        count = np.float64(outer * inner)
        for c in loop(C):
            m = np.float64(save_mean[c])
            if f32:
                acc, part = lanes.workspace()
                mh, ml = _split(m, np.float32(0))
                for o in range(outer):
                    if o + AHEAD < outer:
                        prefetch_lines(dy[o + AHEAD, c], AHEAD_LINES)
                        prefetch_lines(x[o + AHEAD, c], AHEAD_LINES)
                    lanes.acc_grad(dy[o, c], dy[o, c], x[o, c], mh, ml, False, acc, part)
                s_dy, s_dyx, s_x = lanes.total(acc[0]), lanes.total(acc[1]), lanes.total(acc[2])
            else:
                s_dy = s_dyx = s_x = 0.0
                for o in range(outer):
                    if o + AHEAD < outer:
                        prefetch_lines(dy[o + AHEAD, c], AHEAD_LINES)
                        prefetch_lines(x[o + AHEAD, c], AHEAD_LINES)
                    a, bb, cc = _grad_sums(dy[o, c], dy[o, c], x[o, c], m, False)
                    s_dy += a
                    s_dyx += bb
                    s_x += cc
            coef[2 * C + c] = _k1(c, w, save_rstd, has_w)
            _backward_channel(c, C, s_dy, s_dyx, s_x, count, save_mean, save_rstd, dweight, dbias, coef, True)
            mh, ml, k1, mean_dy, q, r = (coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c], coef[4 * C + c],
                                         coef[5 * C + c])
            if stream:
                line = np.empty(inner, dx.dtype)
                for o in range(outer):
                    dys, xs = dy[o, c], x[o, c]
                    for i in range(inner):
                        _backward_apply(dys, xs, line, i, mh, ml, k1, mean_dy, q, r)
                    stream_copy(dx[o, c], line)
                stream_fence()
            else:  # a loop of its own, as the forward's
                for o in range(outer):
                    dys, xs, dxs = dy[o, c], x[o, c], dx[o, c]
                    for i in range(inner):
                        _backward_apply(dys, xs, dxs, i, mh, ml, k1, mean_dy, q, r)

    return batch_norm_channel_backward_cpu


# ---------------------------------------------------------------- tiled path

def _make_tiled_forward(loop, stamp, planar, has_w, has_b):
    def batch_norm_cpu(x, w, b, running_mean, running_var, y, save_mean, save_rstd, pmean, pm2, coef, rows,
                       length, slices, use_batch_stats, update, momentum, eps, stream):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        outer, C, inner = x.shape
        K = pmean.shape[0]
        if use_batch_stats:
            if planar:
                for t in loop(C * K):
                    c, k = t // K, t % K
                    o0, o1, i0, i1 = _item(k, outer, inner, rows, length, slices)
                    s = 0.0
                    for o in range(o0, o1):
                        s += _sum(x[o, c, i0:i1])
                    m = s / ((o1 - o0) * (i1 - i0))
                    q = 0.0
                    for o in range(o0, o1):
                        q += _sum_sq_dev(x[o, c, i0:i1], m)
                    pmean[k, c] = m
                    pm2[k, c] = q
            else:
                x2 = x.reshape((outer, C))
                for k in loop(K):
                    o0, o1, _i0, _i1 = _item(k, outer, 1, rows, 1, 1)
                    pm, pq = pmean[k], pm2[k]
                    for c in range(C):
                        pm[c] = 0.0
                        pq[c] = 0.0
                    for o in range(o0, o1):
                        xr = x2[o]
                        for c in range(C):
                            pm[c] += np.float64(xr[c])
                    for c in range(C):
                        pm[c] = pm[c] / (o1 - o0)
                    for o in range(o0, o1):
                        xr = x2[o]
                        for c in range(C):
                            d = np.float64(xr[c]) - pm[c]
                            pq[c] += d * d
        for c in range(C):
            n = mean = m2 = 0.0
            if use_batch_stats:
                for k in range(K):
                    o0, o1, i0, i1 = _item(k, outer, inner, rows, length, slices)
                    n, mean, m2 = _merge(n, mean, m2, np.float64((o1 - o0) * (i1 - i0)), pmean[k, c], pm2[k, c])
                var = m2 / n
            else:
                mean, var = np.float64(running_mean[c]), np.float64(running_var[c])
            _forward_channel(c, C, mean, var, n, w, b, running_mean, running_var, momentum, eps, save_mean,
                             save_rstd, coef, update, has_w, has_b)
        if planar:
            items = outer * C * slices
            per = max(1, APPLY_BLOCK // length)
            for blk in loop(-(-items // per)):
                line = np.empty(length if stream else 0, y.dtype)
                for t in range(blk * per, min((blk + 1) * per, items)):
                    run, s = t // slices, t % slices
                    o, c = run // C, run % C
                    i0 = s * length
                    i1 = min(i0 + length, inner)
                    xs, ys = x[o, c, i0:i1], line[:i1 - i0] if stream else y[o, c, i0:i1]
                    mh, ml, alpha, beta = coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c]
                    for i in range(i1 - i0):
                        _apply(xs, ys, i, mh, ml, alpha, beta)
                    if stream:
                        stream_copy(y[o, c, i0:i1], ys)
                if stream:
                    stream_fence()
        else:
            x2, y2 = x.reshape((outer, C)), y.reshape((outer, C))
            mh, ml, alpha, beta = coef[:C], coef[C:2 * C], coef[2 * C:3 * C], coef[3 * C:4 * C]
            per = max(1, APPLY_BLOCK // C)
            for blk in loop(-(-outer // per)):
                line = np.empty(C if stream else 0, y.dtype)
                for o in range(blk * per, min((blk + 1) * per, outer)):
                    xr, yr = x2[o], line if stream else y2[o]
                    for c in range(C):
                        _apply(xr, yr, c, mh[c], ml[c], alpha[c], beta[c])
                    if stream:
                        stream_copy(y2[o], line)
                if stream:
                    stream_fence()

    return batch_norm_cpu


def _make_tiled_backward(loop, stamp, planar, has_w):
    def batch_norm_backward_cpu(dy, x, w, save_mean, save_rstd, dx, dweight, dbias, p, coef, rows, length,
                                slices, use_batch_stats, stream):
        _ = stamp
        outer, C, inner = x.shape
        K = p.shape[1]
        for c in range(C):
            coef[2 * C + c] = _k1(c, w, save_rstd, has_w)
        write_dx = not use_batch_stats
        if planar:
            for t in loop(C * K):
                c, k = t // K, t % K
                o0, o1, i0, i1 = _item(k, outer, inner, rows, length, slices)
                m = np.float64(save_mean[c])
                k1 = coef[2 * C + c]
                s_dy = s_dyx = s_x = 0.0
                for o in range(o0, o1):
                    dys, xs = dy[o, c, i0:i1], x[o, c, i0:i1]
                    a, bb, cc = _grad_sums(dys, dys, xs, m, False)
                    s_dy += a
                    s_dyx += bb
                    s_x += cc
                    if write_dx:
                        dxs = dx[o, c, i0:i1]
                        for i in range(i1 - i0):
                            dxs[i] = dys[i] * k1
                p[0, k, c] = s_dy
                p[1, k, c] = s_dyx
                p[2, k, c] = s_x
        else:
            x2, dy2, dx2 = x.reshape((outer, C)), dy.reshape((outer, C)), dx.reshape((outer, C))
            k1s = coef[2 * C:3 * C]
            for k in loop(K):
                o0, o1, _i0, _i1 = _item(k, outer, 1, rows, 1, 1)
                p0, p1, p2 = p[0, k], p[1, k], p[2, k]
                for c in range(C):
                    p0[c] = p1[c] = p2[c] = 0.0
                for o in range(o0, o1):
                    xr, dyr, dxr = x2[o], dy2[o], dx2[o]
                    for c in range(C):
                        a, bb, cc = _grad_terms(dyr, dyr, xr, c, np.float64(save_mean[c]), False)
                        p0[c] += a
                        p1[c] += bb
                        p2[c] += cc
                        if write_dx:
                            dxr[c] = dyr[c] * k1s[c]
        count = np.float64(outer * inner)
        for c in range(C):
            s_dy = s_dyx = s_x = 0.0
            for k in range(K):
                s_dy += p[0, k, c]
                s_dyx += p[1, k, c]
                s_x += p[2, k, c]
            _backward_channel(c, C, s_dy, s_dyx, s_x, count, save_mean, save_rstd, dweight, dbias, coef,
                              use_batch_stats)
        if not use_batch_stats:
            return
        if planar:
            items = outer * C * slices
            per = max(1, APPLY_BLOCK // length)
            for blk in loop(-(-items // per)):
                line = np.empty(length if stream else 0, dx.dtype)
                for t in range(blk * per, min((blk + 1) * per, items)):
                    run, s = t // slices, t % slices
                    o, c = run // C, run % C
                    i0 = s * length
                    i1 = min(i0 + length, inner)
                    dys, xs = dy[o, c, i0:i1], x[o, c, i0:i1]
                    dxs = line[:i1 - i0] if stream else dx[o, c, i0:i1]
                    mh, ml, k1, mean_dy, q, r = (coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c],
                                                 coef[4 * C + c], coef[5 * C + c])
                    for i in range(i1 - i0):
                        _backward_apply(dys, xs, dxs, i, mh, ml, k1, mean_dy, q, r)
                    if stream:
                        stream_copy(dx[o, c, i0:i1], dxs)
                if stream:
                    stream_fence()
        else:
            x2, dy2, dx2 = x.reshape((outer, C)), dy.reshape((outer, C)), dx.reshape((outer, C))
            mh, ml, k1, mean_dy, q, r = (coef[:C], coef[C:2 * C], coef[2 * C:3 * C], coef[3 * C:4 * C],
                                         coef[4 * C:5 * C], coef[5 * C:6 * C])
            per = max(1, APPLY_BLOCK // C)
            for blk in loop(-(-outer // per)):
                line = np.empty(C if stream else 0, dx.dtype)
                for o in range(blk * per, min((blk + 1) * per, outer)):
                    dyr, xr, dxr = dy2[o], x2[o], line if stream else dx2[o]
                    for c in range(C):
                        _backward_apply(dyr, xr, dxr, c, mh[c], ml[c], k1[c], mean_dy[c], q[c], r[c])
                    if stream:
                        stream_copy(dx2[o], line)
                if stream:
                    stream_fence()

    return batch_norm_backward_cpu


CPU_FORWARD = _launch.CpuDrivers(_make_forward_cpu)
CPU_BACKWARD = _launch.CpuDrivers(_make_backward_cpu)

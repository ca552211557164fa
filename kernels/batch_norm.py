"""BatchNorm forward (training and eval) and fused backward in Numba: a parallel CPU driver and CUDA kernels
around the rules of :mod:`pyopt.kernels._norm_rules` (maths and docs: :mod:`pyopt.reference.batch_norm`; C:
``csrc/batch_norm.c``).  ``x`` arrives as ``[outer][C][inner]`` (``pyopt._norm_args.ChannelLayout``): NCHW is
``(N, C, H*W)``, channels-last ``(N*H*W, C, 1)``.

Training forward: per channel ``mean``, biased ``var`` (float64, two-pass per reduction item, items merged with
Chan's formula), ``rstd = 1/sqrt(var + eps)``, the running-stat update (ATen: ``rm = a mean + (1 - a) rm``,
``rv = a var m/(m-1) + (1 - a) rv``, float64; ``a`` = momentum, or ``1/t`` for momentum None, resolved by the
caller), then ``y = ((x - mean_hi) - mean_lo) (rstd w) + b``.  Eval: the elementwise pass with the running stats.
Backward: per-channel sums ``dy``, ``dy (x - mean)``, ``x - mean`` (float64), then with batch statistics
``dx = w rstd ((dy - mean(dy)) - xhat mean(dy xhat))``; with running statistics ``dx = w rstd dy``, written during
the sums pass.  Bytes per element (fp32), the minimum (:func:`pyopt.reference.batch_norm.bytes_moved`): forward 8,
backward 12; these kernels read x (dy, x) twice in training, from cache when a reduction item fits there.

Design: **two-stage deterministic reductions**.  Each channel's values are cut into reduction items by the shape
alone (:func:`geometry`: groups of rows x a slice of the inner run, about ``BLOCK`` elements; channels-last:
groups of rows across all channels).  Stage one reduces each item (CPU: a ``prange`` over items, fixed-lane sums;
GPU: one CUDA block per item with a shared-memory tree, or for channels-last a thread per channel) into per-item
partials ``[k][C]``; stage two combines a channel's partials in item order (Chan's merge for the statistics, plain
sums in the backward) and computes the per-channel constants of the elementwise pass.  So no result depends on
the thread count, the launch order or timing, and there are no float atomics.  An item is small enough for its
second pass (the deviations from the item's own mean) to read it from cache.
"""
import numpy as np

from pyopt import _norm_kernels as _nk
from pyopt.kernels import _launch
from pyopt.kernels import _norm_rules as nr
from pyopt.kernels._norm_host import address, device_scratch, placeholder, scratch

BLOCK = 16384  # elements per reduction item (CPU and GPU): 64 KiB of float32

_sum = nr.lanes_sum.cpu
_sum_sq_dev = nr.lanes_sum_sq_dev.cpu
_grad_sums = nr.lanes_grad_sums.cpu
_grad_terms = nr.grad_terms.cpu
_item = nr.bn_item.cpu
_merge = nr.chan_merge.cpu
_forward_channel = nr.bn_forward_channel.cpu
_backward_channel = nr.bn_backward_channel.cpu
_k1 = nr.bn_k1.cpu
_apply = nr.bn_apply.cpu
_backward_apply = nr.bn_backward_apply.cpu
cuda = None  # numba.cuda, bound by the CUDA factories (see kernels/adam.py)


def geometry(outer, channels, inner, block=BLOCK):
    """``(rows, length, slices, items)``: the reduction items of a channel (:func:`_norm_rules.bn_item`), about
    ``block`` elements each.  Channels-last (``inner == 1``): groups of ``block // C`` rows, every channel."""
    if inner == 1:
        rows, length, slices = max(1, block // max(channels, 1)), 1, 1
    elif inner > block:
        rows, length, slices = 1, block, -(-inner // block)
    else:
        rows, length, slices = max(1, block // inner), inner, 1
    return rows, length, slices, -(-outer // rows) * slices


# ---------------------------------------------------------------- CPU

def _make_forward_cpu(loop, stamp, planar, has_w, has_b):
    def batch_norm_cpu(x, w, b, running_mean, running_var, y, save_mean, save_rstd, pmean, pm2, coef, rows,
                       length, slices, use_batch_stats, update, momentum, eps):
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
            for t in loop(outer * C * slices):
                run, s = t // slices, t % slices
                o, c = run // C, run % C
                i0 = s * length
                i1 = min(i0 + length, inner)
                xs, ys = x[o, c, i0:i1], y[o, c, i0:i1]
                mh, ml, alpha, beta = coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c]
                for i in range(i1 - i0):
                    _apply(xs, ys, i, mh, ml, alpha, beta)
        else:
            x2, y2 = x.reshape((outer, C)), y.reshape((outer, C))
            mh, ml, alpha, beta = coef[:C], coef[C:2 * C], coef[2 * C:3 * C], coef[3 * C:4 * C]
            for o in loop(outer):
                xr, yr = x2[o], y2[o]
                for c in range(C):
                    _apply(xr, yr, c, mh[c], ml[c], alpha[c], beta[c])

    return batch_norm_cpu


def _make_backward_cpu(loop, stamp, planar, has_w):
    def batch_norm_backward_cpu(dy, x, w, save_mean, save_rstd, dx, dweight, dbias, p, coef, rows, length,
                                slices, use_batch_stats):
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
            for t in loop(outer * C * slices):
                run, s = t // slices, t % slices
                o, c = run // C, run % C
                i0 = s * length
                i1 = min(i0 + length, inner)
                dys, xs, dxs = dy[o, c, i0:i1], x[o, c, i0:i1], dx[o, c, i0:i1]
                mh, ml, k1, mean_dy, q, r = (coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c], coef[4 * C + c],
                                             coef[5 * C + c])
                for i in range(i1 - i0):
                    _backward_apply(dys, xs, dxs, i, mh, ml, k1, mean_dy, q, r)
        else:
            x2, dy2, dx2 = x.reshape((outer, C)), dy.reshape((outer, C)), dx.reshape((outer, C))
            mh, ml, k1, mean_dy, q, r = (coef[:C], coef[C:2 * C], coef[2 * C:3 * C], coef[3 * C:4 * C],
                                         coef[4 * C:5 * C], coef[5 * C:6 * C])
            for o in loop(outer):
                dyr, xr, dxr = dy2[o], x2[o], dx2[o]
                for c in range(C):
                    _backward_apply(dyr, xr, dxr, c, mh[c], ml[c], k1[c], mean_dy[c], q[c], r[c])

    return batch_norm_backward_cpu


CPU_FORWARD = _launch.CpuDrivers(_make_forward_cpu)
CPU_BACKWARD = _launch.CpuDrivers(_make_backward_cpu)


def numba_forward(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps, y, save_mean,
                  save_rstd):
    """The ``numba`` backend of ``batch_norm`` (float16: the float32 driver on upcast copies, as ``c``)."""
    xc, wc, bc, yc = _nk._up(x), _nk._up(weight), _nk._up(bias), _nk._compute(y)
    outer, C, inner = xc.shape
    if outer * inner == 0 or C == 0:
        return  # the caller handles empty batches
    t = xc.dtype
    rows, length, slices, K = geometry(outer, C, inner)
    sd = save_mean.dtype
    rm = placeholder(sd) if running_mean is None else running_mean
    rv = placeholder(sd) if running_var is None else running_var
    driver = CPU_FORWARD.get((inner > 1, wc is not None, bc is not None), xc.size)
    driver(xc, placeholder(t) if wc is None else wc, placeholder(t) if bc is None else bc, rm, rv, yc, save_mean,
           save_rstd, scratch("bn_mean", (K, C)), scratch("bn_m2", (K, C)), scratch("bn_coef", (4 * C,), t), rows,
           length, slices, bool(use_batch_stats), bool(use_batch_stats and running_mean is not None),
           np.float64(momentum), np.float64(eps))
    _nk._copy_back(y, yc)


def numba_backward(dy, x, weight, save_mean, save_rstd, use_batch_stats, dx, dweight, dbias):
    """The ``numba`` backend of ``batch_norm_backward``."""
    dyc, xc, wc = _nk._up(dy), _nk._up(x), _nk._up(weight)
    dxc, dwc, dbc = _nk._compute(dx), _nk._compute(dweight), _nk._compute(dbias)
    outer, C, inner = xc.shape
    if outer * inner == 0:
        dwc[...], dbc[...] = 0, 0  # the empty sums
    else:
        rows, length, slices, K = geometry(outer, C, inner)
        driver = CPU_BACKWARD.get((inner > 1, wc is not None), xc.size)
        driver(dyc, xc, placeholder(xc.dtype) if wc is None else wc, save_mean, save_rstd, dxc, dwc, dbc,
               scratch("bn_sums", (3, K, C)), scratch("bn_coef", (6 * C,), xc.dtype), rows, length, slices,
               bool(use_batch_stats))
    for out, computed in ((dx, dxc), (dweight, dwc), (dbias, dbc)):
        _nk._copy_back(out, computed)


# ---------------------------------------------------------------- CUDA

def _bind_cuda():
    global cuda
    cuda = _launch.cuda()
    return _launch.device_view(), _launch.device_cast()


def _make_stats_cuda(threads, planar):
    """Stage one of the training forward: item ``k`` of channel ``c`` -> ``partial[0|1, k, c]`` = (its mean, its
    sum of squared deviations).  Planar: one block per item, a shared-memory tree; channels-last: a thread per
    channel of an item (consecutive channels are consecutive addresses: coalesced)."""
    view, _ = _bind_cuda()
    block_sum, item = nr.block_sum.cuda, nr.bn_item.cuda
    f64 = nr.FLOAT64

    def batch_norm_stats_cuda(px, ppart, outer, C, inner, rows, length, slices, K, proto):
        shared = cuda.shared.array(threads, f64)
        t, step = cuda.threadIdx.x, cuda.blockDim.x
        x = view(px, 0, outer * C * inner, proto)
        part = view(ppart, 0, 2 * K * C, 0.0)
        if planar:
            for it in range(cuda.blockIdx.x, C * K, cuda.gridDim.x):
                c, k = it // K, it % K
                o0, o1, i0, i1 = item(k, outer, inner, rows, length, slices)
                s = 0.0
                for o in range(o0, o1):
                    base = (o * C + c) * inner
                    for i in range(i0 + t, i1, step):
                        s += np.float64(x[base + i])
                m = block_sum(shared, s) / ((o1 - o0) * (i1 - i0))
                s = 0.0
                for o in range(o0, o1):
                    base = (o * C + c) * inner
                    for i in range(i0 + t, i1, step):
                        d = np.float64(x[base + i]) - m
                        s += d * d
                q = block_sum(shared, s)
                if t == 0:
                    part[k * C + c] = m
                    part[(K + k) * C + c] = q
        else:
            tiles = (C + step - 1) // step
            for it in range(cuda.blockIdx.x, K * tiles, cuda.gridDim.x):
                k, c = it // tiles, (it % tiles) * step + t
                if c < C:
                    o0, o1, _i0, _i1 = item(k, outer, 1, rows, 1, 1)
                    s = 0.0
                    for o in range(o0, o1):
                        s += np.float64(x[o * C + c])
                    m = s / (o1 - o0)
                    s = 0.0
                    for o in range(o0, o1):
                        d = np.float64(x[o * C + c]) - m
                        s += d * d
                    part[k * C + c] = m
                    part[(K + k) * C + c] = s

    return batch_norm_stats_cuda


def _make_finalize_cuda(has_w, has_b):
    """Stage two of the forward: a thread per channel combines its items in order (Chan), then the saved stats,
    the running-stat update and the elementwise constants (:func:`_norm_rules.bn_forward_channel`)."""
    view, _ = _bind_cuda()
    item, merge, forward_channel = nr.bn_item.cuda, nr.chan_merge.cuda, nr.bn_forward_channel.cuda

    def batch_norm_finalize_cuda(ppart, pw, pb, prm, prv, psm, psr, pcoef, outer, C, inner, rows, length, slices,
                                 K, use_batch_stats, update, momentum, eps, proto, stat_proto):
        part = view(ppart, 0, 2 * K * C, 0.0)
        w, b = view(pw, 0, C, proto), view(pb, 0, C, proto)
        rm, rv = view(prm, 0, C, stat_proto), view(prv, 0, C, stat_proto)
        sm, sr = view(psm, 0, C, stat_proto), view(psr, 0, C, stat_proto)
        coef = view(pcoef, 0, 4 * C, proto)
        for c in range(cuda.grid(1), C, cuda.gridsize(1)):
            n = mean = m2 = 0.0
            if use_batch_stats and K == 0:
                mean = var = np.nan  # an empty batch: NaN statistics, as the reference
            elif use_batch_stats:
                for k in range(K):
                    o0, o1, i0, i1 = item(k, outer, inner, rows, length, slices)
                    n, mean, m2 = merge(n, mean, m2, np.float64((o1 - o0) * (i1 - i0)), part[k * C + c],
                                        part[(K + k) * C + c])
                var = m2 / n
            else:
                mean, var = np.float64(rm[c]), np.float64(rv[c])
            forward_channel(c, C, mean, var, n, w, b, rm, rv, momentum, eps, sm, sr, coef, update, has_w, has_b)

    return batch_norm_finalize_cuda


def _make_apply_cuda(planar, backward):
    """The elementwise pass (forward ``y``, or the training backward's ``dx``).  Planar: a block per (run, inner
    slice), the channel's constants read once; channels-last: a block per row, a thread per channel."""
    view, _ = _bind_cuda()
    apply, backward_apply = nr.bn_apply.cuda, nr.bn_backward_apply.cuda

    def batch_norm_apply_cuda(px, pdy, pout, pcoef, outer, C, inner, length, slices, proto):
        total = outer * C * inner
        x, dy, out = view(px, 0, total, proto), view(pdy, 0, total if backward else 0, proto), view(pout, 0, total,
                                                                                                    proto)
        coef = view(pcoef, 0, (6 if backward else 4) * C, proto)
        t, step = cuda.threadIdx.x, cuda.blockDim.x
        if planar:
            for it in range(cuda.blockIdx.x, outer * C * slices, cuda.gridDim.x):
                run, s = it // slices, it % slices
                c = run % C
                i0 = s * length
                i1 = min(i0 + length, inner)
                base = run * inner
                for i in range(base + i0 + t, base + i1, step):
                    if backward:
                        backward_apply(dy, x, out, i, coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c],
                                       coef[4 * C + c], coef[5 * C + c])
                    else:
                        apply(x, out, i, coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c])
        else:
            for o in range(cuda.blockIdx.x, outer, cuda.gridDim.x):
                for c in range(t, C, step):
                    i = o * C + c
                    if backward:
                        backward_apply(dy, x, out, i, coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c],
                                       coef[4 * C + c], coef[5 * C + c])
                    else:
                        apply(x, out, i, coef[c], coef[C + c], coef[2 * C + c], coef[3 * C + c])

    return batch_norm_apply_cuda


def _make_sums_cuda(threads, planar, has_w):
    """Stage one of the backward: item ``k`` of channel ``c`` -> ``partial[0|1|2, k, c]`` = sums of ``dy``,
    ``dy (x - mean)``, ``x - mean``; with ``write_dx`` (running statistics) also ``dx = dy w rstd``."""
    view, cast = _bind_cuda()
    block_sum3, item, grad_terms, k1_of = nr.block_sum3.cuda, nr.bn_item.cuda, nr.grad_terms.cuda, nr.bn_k1.cuda
    f64 = nr.FLOAT64

    def batch_norm_sums_cuda(pdy, px, pw, psm, psr, pdx, ppart, outer, C, inner, rows, length, slices, K,
                             write_dx, proto, stat_proto):
        shared = cuda.shared.array((3, threads), f64)
        t, step = cuda.threadIdx.x, cuda.blockDim.x
        total = outer * C * inner
        x, dy, dx = view(px, 0, total, proto), view(pdy, 0, total, proto), view(pdx, 0, total, proto)
        w = view(pw, 0, C, proto)
        sm, sr = view(psm, 0, C, stat_proto), view(psr, 0, C, stat_proto)
        part = view(ppart, 0, 3 * K * C, 0.0)
        if planar:
            for it in range(cuda.blockIdx.x, C * K, cuda.gridDim.x):
                c, k = it // K, it % K
                o0, o1, i0, i1 = item(k, outer, inner, rows, length, slices)
                m = np.float64(sm[c])
                k1 = cast(k1_of(c, w, sr, has_w), proto)
                a = b = e = 0.0
                for o in range(o0, o1):
                    base = (o * C + c) * inner
                    for i in range(base + i0 + t, base + i1, step):
                        ga, gb, ge = grad_terms(dy, dy, x, i, m, False)
                        a += ga
                        b += gb
                        e += ge
                        if write_dx:
                            dx[i] = dy[i] * k1
                a, b, e = block_sum3(shared, a, b, e)
                if t == 0:
                    part[k * C + c] = a
                    part[(K + k) * C + c] = b
                    part[(2 * K + k) * C + c] = e
        else:
            tiles = (C + step - 1) // step
            for it in range(cuda.blockIdx.x, K * tiles, cuda.gridDim.x):
                k, c = it // tiles, (it % tiles) * step + t
                if c < C:
                    o0, o1, _i0, _i1 = item(k, outer, 1, rows, 1, 1)
                    m = np.float64(sm[c])
                    k1 = cast(k1_of(c, w, sr, has_w), proto)
                    a = b = e = 0.0
                    for o in range(o0, o1):
                        i = o * C + c
                        ga, gb, ge = grad_terms(dy, dy, x, i, m, False)
                        a += ga
                        b += gb
                        e += ge
                        if write_dx:
                            dx[i] = dy[i] * k1
                    part[k * C + c] = a
                    part[(K + k) * C + c] = b
                    part[(2 * K + k) * C + c] = e

    return batch_norm_sums_cuda


def _make_backward_finalize_cuda(has_w):
    """Stage two of the backward: a thread per channel sums its items in order, writes dweight and dbias and the
    training pass's constants (:func:`_norm_rules.bn_backward_channel`)."""
    view, _ = _bind_cuda()
    k1_of, backward_channel = nr.bn_k1.cuda, nr.bn_backward_channel.cuda

    def batch_norm_backward_finalize_cuda(ppart, pw, psm, psr, pdw, pdb, pcoef, C, K, count, use_batch_stats,
                                          proto, stat_proto):
        part = view(ppart, 0, 3 * K * C, 0.0)
        w, dweight, dbias = view(pw, 0, C, proto), view(pdw, 0, C, proto), view(pdb, 0, C, proto)
        sm, sr = view(psm, 0, C, stat_proto), view(psr, 0, C, stat_proto)
        coef = view(pcoef, 0, 6 * C, proto)
        for c in range(cuda.grid(1), C, cuda.gridsize(1)):
            s_dy = s_dyx = s_x = 0.0
            for k in range(K):
                s_dy += part[k * C + c]
                s_dyx += part[(K + k) * C + c]
                s_x += part[(2 * K + k) * C + c]
            coef[2 * C + c] = k1_of(c, w, sr, has_w)
            backward_channel(c, C, s_dy, s_dyx, s_x, count, sm, sr, dweight, dbias, coef, use_batch_stats)

    return batch_norm_backward_finalize_cuda


CUDA_STATS = _launch.CudaKernels(_make_stats_cuda)
CUDA_FINALIZE = _launch.CudaKernels(_make_finalize_cuda)
CUDA_APPLY = _launch.CudaKernels(_make_apply_cuda)
CUDA_SUMS = _launch.CudaKernels(_make_sums_cuda)
CUDA_BACKWARD_FINALIZE = _launch.CudaKernels(_make_backward_finalize_cuda)


def _grid(items, threads):
    return max(1, min(items, _launch.MAX_BLOCKS)), threads


def _channel_grid(C, threads):
    return max(1, min(-(-C // threads), _launch.MAX_BLOCKS)), threads


def cuda_forward(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps, y, save_mean,
                 save_rstd):
    """The ``cuda`` backend of ``batch_norm``: statistics (training), finalize, elementwise pass: three launches.
    A batch with no values gives NaN batch statistics (the running stats are not touched: the caller passes
    none to update)."""
    outer, C, inner = x.shape
    count = outer * inner
    if C == 0:
        return
    T, sd = x.dtype.type, np.dtype(save_mean.dtype).type
    rows, length, slices, K = geometry(outer, C, inner)
    threads = nr.threads()
    planar = inner > 1
    update = bool(use_batch_stats and running_mean is not None and count > 0)
    part = device_scratch("batch_norm", 2 * K * C, x.device)
    coef = device_scratch("batch_norm_coef", 4 * C, x.device, x.dtype)
    shape = (np.int64(outer), np.int64(C), np.int64(inner), np.int64(rows), np.int64(length), np.int64(slices))
    with _launch.device_context(x.device):
        if use_batch_stats and count:
            tiles = 1 if planar else -(-C // threads)
            _launch.launch(CUDA_STATS.get((threads, planar)), *_grid(C * K if planar else K * tiles, threads),
                           address(x), address(part), *shape, np.int64(K), T(0))
        _launch.launch(CUDA_FINALIZE.get((weight is not None, bias is not None)), *_channel_grid(C, threads),
                       address(part), address(weight), address(bias), address(running_mean), address(running_var),
                       address(save_mean), address(save_rstd), address(coef), *shape,
                       np.int64(K if count else 0), bool(use_batch_stats), update, np.float64(momentum),
                       np.float64(eps), T(0), sd(0))
        if count:
            _launch.launch(CUDA_APPLY.get((planar, False)),
                           *_grid(outer * C * slices if planar else outer, threads), address(x), np.uint64(0),
                           address(y), address(coef), np.int64(outer), np.int64(C), np.int64(inner),
                           np.int64(length), np.int64(slices), T(0))


def cuda_backward(dy, x, weight, save_mean, save_rstd, use_batch_stats, dx, dweight, dbias):
    """The ``cuda`` backend of ``batch_norm_backward``: sums, finalize, and (batch statistics) the elementwise
    pass."""
    outer, C, inner = x.shape
    count = outer * inner
    if C == 0:
        return
    T, sd = x.dtype.type, np.dtype(save_mean.dtype).type
    rows, length, slices, K = geometry(outer, C, inner)
    threads = nr.threads()
    planar = inner > 1
    part = device_scratch("batch_norm", 3 * K * C, x.device)
    coef = device_scratch("batch_norm_coef", 6 * C, x.device, x.dtype)
    with _launch.device_context(x.device):
        if count:
            tiles = 1 if planar else -(-C // threads)
            _launch.launch(CUDA_SUMS.get((threads, planar, weight is not None)),
                           *_grid(C * K if planar else K * tiles, threads), address(dy), address(x),
                           address(weight), address(save_mean), address(save_rstd), address(dx), address(part),
                           np.int64(outer), np.int64(C), np.int64(inner), np.int64(rows), np.int64(length),
                           np.int64(slices), np.int64(K), not use_batch_stats, T(0), sd(0))
        _launch.launch(CUDA_BACKWARD_FINALIZE.get((weight is not None,)), *_channel_grid(C, threads),
                       address(part), address(weight), address(save_mean), address(save_rstd), address(dweight),
                       address(dbias), address(coef), np.int64(C), np.int64(K if count else 0),
                       np.float64(count), bool(use_batch_stats), T(0), sd(0))
        if count and use_batch_stats:
            _launch.launch(CUDA_APPLY.get((planar, True)), *_grid(outer * C * slices if planar else outer, threads),
                           address(x), address(dy), address(dx), address(coef), np.int64(outer), np.int64(C),
                           np.int64(inner), np.int64(length), np.int64(slices), T(0))


# ---------------------------------------------------------------- PTX check (tests/test_cuda_ptx.py)

def ptx_cases(dtype):
    """(label, Python function, argument types) of every CUDA kernel of this module for ``dtype``."""
    from numba import boolean, float64, from_dtype, int64, uint64

    t = from_dtype(np.dtype(dtype))
    threads = nr.NORM_THREADS
    shape = (int64,) * 6
    cases = []
    for planar in (False, True):
        cases.append((f"batch_norm_stats planar={planar}", CUDA_STATS.make(threads, planar),
                      (uint64, uint64) + shape + (int64, t)))
        for backward in (False, True):
            cases.append((f"batch_norm_apply planar={planar} backward={backward}",
                          CUDA_APPLY.make(planar, backward), (uint64,) * 4 + (int64,) * 5 + (t,)))
        for has_w in (False, True):
            cases.append((f"batch_norm_sums planar={planar} w{int(has_w)}", CUDA_SUMS.make(threads, planar, has_w),
                          (uint64,) * 7 + shape + (int64, boolean, t, t)))
    for has_w in (False, True):
        for has_b in (False, True):
            cases.append((f"batch_norm_finalize w{int(has_w)}b{int(has_b)}", CUDA_FINALIZE.make(has_w, has_b),
                          (uint64,) * 8 + shape + (int64, boolean, boolean, float64, float64, t, t)))
        cases.append((f"batch_norm_backward_finalize w{int(has_w)}", CUDA_BACKWARD_FINALIZE.make(has_w),
                      (uint64,) * 7 + (int64, int64, float64, boolean, t, t)))
    return cases

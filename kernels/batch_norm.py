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
second pass (the deviations from the item's own mean) to read it from cache.  The CPU drivers, with the channel
path that C also has (a channel per parallel item when it fits in cache), are in
:mod:`pyopt.kernels._batch_norm_cpu`.
"""
import numpy as np

from pyopt import _norm_kernels as _nk
from pyopt.kernels import _launch
from pyopt.kernels import _norm_rules as nr
from pyopt.kernels._batch_norm_cpu import CPU_BACKWARD, CPU_FORWARD, by_channel, streams
from pyopt.kernels._norm_host import address, device_scratch, placeholder, scratch

BLOCK = 16384  # elements per reduction item (CPU and GPU): 64 KiB of float32

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


# ---------------------------------------------------------------- CPU (drivers: _batch_norm_cpu)



def numba_forward(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps, y, save_mean,
                  save_rstd):
    """The ``numba`` backend of ``batch_norm`` (float16: the float32 driver on upcast copies, as ``c``)."""
    xc, wc, bc, yc = _nk._up(x), _nk._up(weight), _nk._up(bias), _nk._compute(y)
    outer, C, inner = xc.shape
    if outer * inner == 0 or C == 0:
        return  # the caller handles empty batches
    t = xc.dtype
    sd = save_mean.dtype
    rm = placeholder(sd) if running_mean is None else running_mean
    rv = placeholder(sd) if running_var is None else running_var
    w, b = placeholder(t) if wc is None else wc, placeholder(t) if bc is None else bc
    coef = scratch("bn_coef", (4 * C,), t)
    update = bool(use_batch_stats and running_mean is not None)
    channel = bool(use_batch_stats) and by_channel(outer, C, inner, t.itemsize, 1)
    driver = CPU_FORWARD.get((channel, t == np.float32, inner > 1, wc is not None, bc is not None), xc.size)
    stream = streams(inner, yc.nbytes, 2)
    if channel:
        driver(xc, w, b, rm, rv, yc, save_mean, save_rstd, coef, update, np.float64(momentum), np.float64(eps),
               stream)
    else:
        rows, length, slices, K = geometry(outer, C, inner)
        driver(xc, w, b, rm, rv, yc, save_mean, save_rstd, scratch("bn_mean", (K, C)), scratch("bn_m2", (K, C)), coef,
               rows, length, slices, bool(use_batch_stats), update, np.float64(momentum), np.float64(eps), stream)
    _nk._copy_back(y, yc)


def numba_backward(dy, x, weight, save_mean, save_rstd, use_batch_stats, dx, dweight, dbias):
    """The ``numba`` backend of ``batch_norm_backward``."""
    dyc, xc, wc = _nk._up(dy), _nk._up(x), _nk._up(weight)
    dxc, dwc, dbc = _nk._compute(dx), _nk._compute(dweight), _nk._compute(dbias)
    outer, C, inner = xc.shape
    if outer * inner == 0:
        dwc[...], dbc[...] = 0, 0  # the empty sums
    else:
        t = xc.dtype
        w, coef = placeholder(t) if wc is None else wc, scratch("bn_coef", (6 * C,), t)
        channel = bool(use_batch_stats) and by_channel(outer, C, inner, t.itemsize, 2)
        driver = CPU_BACKWARD.get((channel, t == np.float32, inner > 1, wc is not None), xc.size)
        stream = streams(inner, dxc.nbytes, 3)
        if channel:
            driver(dyc, xc, w, save_mean, save_rstd, dxc, dwc, dbc, coef, stream)
        else:
            rows, length, slices, K = geometry(outer, C, inner)
            driver(dyc, xc, w, save_mean, save_rstd, dxc, dwc, dbc, scratch("bn_sums", (3, K, C)), coef, rows, length,
                   slices, bool(use_batch_stats), stream)
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

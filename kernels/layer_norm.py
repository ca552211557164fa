"""LayerNorm forward and fused backward in Numba: a parallel CPU driver and CUDA kernels around the rules of
:mod:`pyopt.kernels._norm_rules` (maths and docs: :mod:`pyopt.reference.layer_norm`; C: ``csrc/layer_norm.c``).

Per row of ``n`` elements: ``mean = sum(x)/n``, ``var = sum((x - mean)^2)/n`` (two passes, float64 for every
dtype), ``rstd = 1/sqrt(var + eps)``, ``y = ((x - mean_hi) - mean_lo) rstd w + b``.  Backward with ``g = dy w``:
``dx = ((g - mean(g)) - xhat mean(g xhat)) rstd``, ``dweight = sum_rows dy xhat``, ``dbias = sum_rows dy``.
Bytes per element (fp32), the minimum: forward 8 (read x, write y), backward 12 (read dy, x, write dx).

Design:

- CPU: blocks of ``BLOCK_ROWS`` rows in parallel (``prange``); a row's sums run over fixed lanes (float32 rows:
  float32 chunks into float64 lanes and a centred correction pass, :mod:`pyopt.kernels._norm_lanes`; float64
  rows: ``_norm_rules.lanes_*``), its later passes read it from cache; a call larger than half the cache streams
  its output rows (:mod:`pyopt.kernels._norm_stream`).  The backward's dweight/dbias come from a fixed number of
  row blocks (at most ``ROW_BLOCKS`` of at least ``MIN_BLOCK_ROWS`` rows), each adding its rows into its own float64
  partial row (float32 rows: through float32 partial rows flushed every ``FLUSH_ROWS`` rows, as C), summed in block
  order afterwards: bitwise the same for any thread count.
- GPU: one CUDA block per row (grid-stride over rows); the threads' float64 partials meet in a shared-memory tree
  (:func:`~pyopt.kernels._norm_rules.block_sum`), the normalize pass re-reads the row from L1/L2.  The backward
  is one kernel over a fixed number of row blocks (``GPU_ROW_BLOCKS``), one CUDA block each: per row the three
  sums (one tree), then ``dx``, with each thread adding its columns' ``dy xhat`` and ``dy`` into the block's
  float64 partial row of a ``[blocks][2][n]`` scratch (a thread always owns the same columns, so there is no race
  and the order is the rows'); a second kernel sums the partials of each column in block order.  No float
  atomics anywhere, so the results do not depend on which block runs first.
"""
import numpy as np

from pyopt import _norm_kernels as _nk
from pyopt.kernels import _launch
from pyopt.kernels import _norm_lanes as lanes
from pyopt.kernels import _norm_rules as nr
from pyopt.kernels._norm_host import (FLUSH_ROWS, address, device_scratch, flush, launch_sum_blocks, placeholder,
                                      scratch, sum_blocks)
from pyopt.kernels._norm_stream import stream_copy, stream_fence, stream_rows

_split = nr.split.cpu
_rstd = nr.rstd_of.cpu
_coef = nr.ln_backward_coef.cpu
_apply = nr.ln_apply.cpu
_backward_apply = nr.ln_backward_apply.cpu
_cast = _launch.host_cast
cuda = None  # numba.cuda, bound by the CUDA factories (see kernels/adam.py)
BLOCK_ROWS = 16  # CPU forward: rows per parallel item (each item allocates its lanes' work arrays once)


def _flat(a):
    """A weight or bias of a multi-dimensional normalized_shape as the 1-D row the drivers index."""
    return None if a is None else a.reshape(-1)


# ---------------------------------------------------------------- CPU

def _make_forward_cpu(loop, stamp, f32, has_w, has_b):
    def layer_norm_cpu(x, w, b, y, mean, rstd, eps, proto, stream):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        rows, n = x.shape
        for blk in loop(-(-rows // BLOCK_ROWS)):
            acc, part = lanes.workspace()
            line = np.empty(n if stream else 0, y.dtype)
            for r in range(blk * BLOCK_ROWS, min((blk + 1) * BLOCK_ROWS, rows)):
                xr = x[r]
                ahead = x[r + 1] if stream and r + 1 < rows else xr
                if f32:  # a constant of the closure: numba keeps one branch (see _norm_lanes)
                    m, var = lanes.mean_var_f32(xr, acc, part, ahead)
                else:
                    m, var = lanes.mean_var_f64(xr, acc, part, ahead)
                rs = _cast(_rstd(var, eps), proto)
                mh, ml = _split(m, proto)
                if stream:
                    for j in range(n):
                        _apply(xr, w, b, line, j, mh, ml, rs, has_w, has_b)
                    stream_copy(y[r], line)
                else:  # a loop of its own: a store through `line if stream else y[r]` is slower (_batch_norm_cpu)
                    yr = y[r]
                    for j in range(n):
                        _apply(xr, w, b, yr, j, mh, ml, rs, has_w, has_b)
                mean[r] = m
                rstd[r] = rs
            if stream:
                stream_fence()

    return layer_norm_cpu


def _make_backward_cpu(loop, stamp, f32, has_w):
    def layer_norm_backward_cpu(dy, x, w, mean, rstd, dx, dweight, dbias, partial, per, stream):
        _ = stamp
        rows, n = x.shape
        for blk in loop(partial.shape[0]):
            acc, part = lanes.workspace()
            pw, pb = partial[blk, 0], partial[blk, 1]
            for j in range(n):
                pw[j] = 0.0
                pb[j] = 0.0
            cw, cb = np.zeros(n if f32 else 0, np.float32), np.zeros(n if f32 else 0, np.float32)
            line = np.empty(n if stream else 0, dx.dtype)
            r0 = blk * per
            r1 = min(r0 + per, rows)
            for r in range(r0, r1):
                dyr, xr, dxr = dy[r], x[r], line if stream else dx[r]
                if f32:
                    s_g, s_gx, s_x = lanes.grad_sums_f32(dyr, w, xr, np.float64(mean[r]), has_w, acc, part)
                else:
                    s_g, s_gx, s_x = lanes.grad_sums_f64(dyr, w, xr, np.float64(mean[r]), has_w, acc, part)
                mh, ml, mean_g, mean_gxhat = _coef(s_g, s_gx, s_x, mean[r], rstd[r], n)
                rs = rstd[r]
                if f32:
                    for j in range(n):
                        cw[j] += _backward_apply(dyr, xr, w, dxr, j, mh, ml, rs, mean_g, mean_gxhat, has_w)
                        cb[j] += dyr[j]
                    if (r - r0 + 1) % FLUSH_ROWS == 0 or r + 1 == r1:
                        flush(pw, cw)
                        flush(pb, cb)
                else:
                    for j in range(n):
                        pw[j] += _backward_apply(dyr, xr, w, dxr, j, mh, ml, rs, mean_g, mean_gxhat, has_w)
                        pb[j] += dyr[j]
                if stream:
                    stream_copy(dx[r], line)
            if stream:
                stream_fence()
        sum_blocks(partial, 0, dweight)
        sum_blocks(partial, 1, dbias)

    return layer_norm_backward_cpu


CPU_FORWARD = _launch.CpuDrivers(_make_forward_cpu)
CPU_BACKWARD = _launch.CpuDrivers(_make_backward_cpu)


def numba_forward(x, weight, bias, eps, y, mean, rstd):
    """The ``numba`` backend of ``layer_norm`` (float16: the float32 driver on upcast copies, as ``c``)."""
    xc, wc, bc, yc = _nk._up(x), _flat(_nk._up(weight)), _flat(_nk._up(bias)), _nk._compute(y)
    t = xc.dtype
    driver = CPU_FORWARD.get((t == np.float32, wc is not None, bc is not None), xc.size)
    driver(xc, placeholder(t) if wc is None else wc, placeholder(t) if bc is None else bc, yc, mean, rstd,
           np.float64(eps), t.type(0), stream_rows(2 * yc.nbytes, xc.shape[1] * t.itemsize))
    _nk._copy_back(y, yc)


def numba_backward(dy, x, weight, mean, rstd, dx, dweight, dbias):
    """The ``numba`` backend of ``layer_norm_backward``."""
    rows, n = x.shape
    if n == 0:
        return
    dyc, xc, wc = _nk._up(dy), _nk._up(x), _flat(_nk._up(weight))
    dxc, dwc, dbc = _nk._compute(dx), _nk._compute(dweight), _nk._compute(dbias)
    per, n_blocks = nr.row_blocks(rows, nr.ROW_BLOCKS, nr.MIN_BLOCK_ROWS)
    driver = CPU_BACKWARD.get((xc.dtype == np.float32, wc is not None), xc.size)
    driver(dyc, xc, placeholder(xc.dtype) if wc is None else wc, mean, rstd, dxc, dwc, dbc,
           scratch("layer_norm", (n_blocks, 2, n)), per, stream_rows(3 * dxc.nbytes, n * dxc.itemsize))
    for out, computed in ((dx, dxc), (dweight, dwc), (dbias, dbc)):
        _nk._copy_back(out, computed)


# ---------------------------------------------------------------- CUDA

def _make_forward_cuda(threads, has_w, has_b):
    global cuda
    cuda = _launch.cuda()
    view, cast = _launch.device_view(), _launch.device_cast()
    block_sum, split, rstd_of, apply = nr.block_sum.cuda, nr.split.cuda, nr.rstd_of.cuda, nr.ln_apply.cuda
    f64 = nr.FLOAT64

    def layer_norm_cuda(px, pw, pb, py, pmean, prstd, rows, n, eps, proto):
        shared = cuda.shared.array(threads, f64)
        t, step = cuda.threadIdx.x, cuda.blockDim.x
        w, b = view(pw, 0, n, proto), view(pb, 0, n, proto)
        mean, rstd = view(pmean, 0, rows, proto), view(prstd, 0, rows, proto)
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            x, y = view(px, r * n, (r + 1) * n, proto), view(py, r * n, (r + 1) * n, proto)
            s = 0.0
            for j in range(t, n, step):
                s += np.float64(x[j])
            m = block_sum(shared, s) / n
            s = 0.0
            for j in range(t, n, step):
                d = np.float64(x[j]) - m
                s += d * d
            rs = cast(rstd_of(block_sum(shared, s) / n, eps), proto)
            mh, ml = split(m, proto)
            for j in range(t, n, step):
                apply(x, w, b, y, j, mh, ml, rs, has_w, has_b)
            if t == 0:
                mean[r] = m
                rstd[r] = rs

    return layer_norm_cuda


def _make_backward_cuda(threads, has_w):
    global cuda
    cuda = _launch.cuda()
    view = _launch.device_view()
    block_sum3, grad_terms, coef = nr.block_sum3.cuda, nr.grad_terms.cuda, nr.ln_backward_coef.cuda
    backward_apply = nr.ln_backward_apply.cuda
    f64 = nr.FLOAT64

    def layer_norm_backward_cuda(pdy, px, pw, pmean, prstd, pdx, ppartial, rows, n, per, proto):
        shared = cuda.shared.array((3, threads), f64)
        t, step, blk = cuda.threadIdx.x, cuda.blockDim.x, cuda.blockIdx.x
        w = view(pw, 0, n, proto)
        mean, rstd = view(pmean, 0, rows, proto), view(prstd, 0, rows, proto)
        pwt = view(ppartial, 2 * blk * n, (2 * blk + 1) * n, 0.0)
        pbt = view(ppartial, (2 * blk + 1) * n, (2 * blk + 2) * n, 0.0)
        r0 = blk * per
        for r in range(r0, min(r0 + per, rows)):
            lo, hi = r * n, (r + 1) * n
            dy, x, dx = view(pdy, lo, hi, proto), view(px, lo, hi, proto), view(pdx, lo, hi, proto)
            m = np.float64(mean[r])
            s_g = s_gx = s_x = 0.0
            for j in range(t, n, step):
                g, gx, xc = grad_terms(dy, w, x, j, m, has_w)
                s_g += g
                s_gx += gx
                s_x += xc
            s_g, s_gx, s_x = block_sum3(shared, s_g, s_gx, s_x)
            mh, ml, mean_g, mean_gxhat = coef(s_g, s_gx, s_x, mean[r], rstd[r], n)
            rs = rstd[r]
            for j in range(t, n, step):
                term = np.float64(backward_apply(dy, x, w, dx, j, mh, ml, rs, mean_g, mean_gxhat, has_w))
                if r == r0:  # the block's first row initializes its partial row: no memset
                    pwt[j] = term
                    pbt[j] = np.float64(dy[j])
                else:
                    pwt[j] += term
                    pbt[j] += np.float64(dy[j])

    return layer_norm_backward_cuda


CUDA_FORWARD = _launch.CudaKernels(_make_forward_cuda)
CUDA_BACKWARD = _launch.CudaKernels(_make_backward_cuda)


def cuda_forward(x, weight, bias, eps, y, mean, rstd):
    """The ``cuda`` backend of ``layer_norm``: one launch, a block per row."""
    rows, n = x.shape
    threads = nr.threads()
    kernel = CUDA_FORWARD.get((threads, weight is not None, bias is not None))
    with _launch.device_context(x.device):
        _launch.launch(kernel, min(rows, _launch.MAX_BLOCKS), threads, address(x), address(weight),
                       address(bias), address(y), address(mean), address(rstd), np.int64(rows), np.int64(n),
                       np.float64(eps), x.dtype.type(0))


def cuda_backward(dy, x, weight, mean, rstd, dx, dweight, dbias):
    """The ``cuda`` backend of ``layer_norm_backward``: the fused row kernel, then the column sums."""
    rows, n = x.shape
    if n == 0:
        return
    per, n_blocks = nr.row_blocks(rows, nr.GPU_ROW_BLOCKS, nr.GPU_MIN_BLOCK_ROWS)
    partial = device_scratch("layer_norm", n_blocks * 2 * n, x.device)
    threads = nr.threads()
    with _launch.device_context(x.device):
        if n_blocks:
            kernel = CUDA_BACKWARD.get((threads, weight is not None))
            _launch.launch(kernel, n_blocks, threads, address(dy), address(x), address(weight),
                           address(mean), address(rstd), address(dx), address(partial), np.int64(rows),
                           np.int64(n), np.int64(per), x.dtype.type(0))
        launch_sum_blocks(partial, 2, dweight, dbias, n_blocks, n, x.dtype)


# ---------------------------------------------------------------- PTX check (tests/test_cuda_ptx.py)

def ptx_cases(dtype):
    """(label, Python function, argument types) of every CUDA kernel of this module for ``dtype``."""
    from numba import float64, int64, uint64
    from numba import from_dtype

    t = from_dtype(np.dtype(dtype))
    threads = nr.NORM_THREADS
    cases = []
    for has_w in (False, True):
        for has_b in (False, True):
            cases.append((f"layer_norm w{int(has_w)}b{int(has_b)}", CUDA_FORWARD.make(threads, has_w, has_b),
                          (uint64,) * 6 + (int64, int64, float64, t)))
        cases.append((f"layer_norm_backward w{int(has_w)}", CUDA_BACKWARD.make(threads, has_w),
                      (uint64,) * 7 + (int64, int64, int64, t)))
    return cases

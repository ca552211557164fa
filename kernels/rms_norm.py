"""RMSNorm forward and fused backward in Numba: a parallel CPU driver and CUDA kernels around the rules of
:mod:`pyopt.kernels._norm_rules` (maths and docs: :mod:`pyopt.reference.rms_norm`; C: ``csrc/rms_norm.c``).

Per row of ``n`` elements: ``rstd = 1/sqrt(sum(x^2)/n + eps)`` (float64 sum for every dtype), ``y = x rstd w``.
Backward with ``g = dy w``, ``xhat = x rstd``: ``dx = (g - xhat mean(g xhat)) rstd``,
``dweight = sum_rows dy xhat``.  Bytes per element (fp32), the minimum: forward 8, backward 12.

Design as :mod:`pyopt.kernels.layer_norm`: blocks of rows in parallel on the CPU with fixed-lane sums (float32 rows:
float32 chunks into float64 lanes, :mod:`pyopt.kernels._norm_lanes`) and streamed outputs for large calls; on the
GPU one block per row with a shared-memory tree; the backward's dweight from a fixed number of row blocks' float64
partial rows summed in block order (CPU: after the parallel loop; GPU: a second kernel), never float atomics.
"""
import numpy as np

from pyopt import _norm_kernels as _nk
from pyopt.kernels import _launch
from pyopt.kernels import _norm_lanes as lanes
from pyopt.kernels import _norm_rules as nr
from pyopt.kernels._norm_host import (FLUSH_ROWS, address, device_scratch, flush, launch_sum_blocks, placeholder,
                                      scratch, sum_blocks)
from pyopt.kernels._norm_stream import stream_copy, stream_fence, stream_rows

_rstd = nr.rstd_of.cpu
_coef = nr.rms_backward_coef.cpu
_apply = nr.rms_apply.cpu
_backward_apply = nr.rms_backward_apply.cpu
_cast = _launch.host_cast
cuda = None  # numba.cuda, bound by the CUDA factories (see kernels/adam.py)
BLOCK_ROWS = 16  # CPU forward: rows per parallel item (each item allocates its lanes' work arrays once)


def _flat(a):
    """A weight or bias of a multi-dimensional normalized_shape as the 1-D row the drivers index."""
    return None if a is None else a.reshape(-1)


# ---------------------------------------------------------------- CPU

def _make_forward_cpu(loop, stamp, f32, has_w):
    def rms_norm_cpu(x, w, y, rstd, eps, proto, stream):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        rows, n = x.shape
        for blk in loop(-(-rows // BLOCK_ROWS)):
            acc, part = lanes.workspace()
            line = np.empty(n if stream else 0, y.dtype)
            for r in range(blk * BLOCK_ROWS, min((blk + 1) * BLOCK_ROWS, rows)):
                xr, yr = x[r], line if stream else y[r]
                ahead = x[r + 1] if stream and r + 1 < rows else xr
                if f32:  # a constant of the closure: numba keeps one branch (see _norm_lanes)
                    sq = lanes.sum_sq_f32(xr, acc, part, ahead)
                else:
                    sq = lanes.sum_sq_f64(xr, acc, part, ahead)
                rs = _cast(_rstd(sq / n, eps), proto)
                for j in range(n):
                    _apply(xr, w, yr, j, rs, has_w)
                if stream:
                    stream_copy(y[r], line)
                rstd[r] = rs
            if stream:
                stream_fence()

    return rms_norm_cpu


def _make_backward_cpu(loop, stamp, f32, has_w):
    def rms_norm_backward_cpu(dy, x, w, rstd, dx, dweight, partial, per, stream):
        _ = stamp
        rows, n = x.shape
        for blk in loop(partial.shape[0]):
            acc, part = lanes.workspace()
            pw = partial[blk, 0]
            for j in range(n):
                pw[j] = 0.0
            cw = np.zeros(n if f32 else 0, np.float32)
            line = np.empty(n if stream else 0, dx.dtype)
            r0 = blk * per
            r1 = min(r0 + per, rows)
            for r in range(r0, r1):
                dyr, xr, dxr = dy[r], x[r], line if stream else dx[r]
                rs = rstd[r]
                if f32:
                    s_gx = lanes.dot_f32(dyr, w, xr, has_w, acc, part)
                else:
                    s_gx = lanes.dot_f64(dyr, w, xr, has_w, acc, part)
                mean_gxhat = _coef(s_gx, rs, n)
                if f32:
                    for j in range(n):
                        cw[j] += _backward_apply(dyr, xr, w, dxr, j, rs, mean_gxhat, has_w)
                    if (r - r0 + 1) % FLUSH_ROWS == 0 or r + 1 == r1:
                        flush(pw, cw)
                else:
                    for j in range(n):
                        pw[j] += _backward_apply(dyr, xr, w, dxr, j, rs, mean_gxhat, has_w)
                if stream:
                    stream_copy(dx[r], line)
            if stream:
                stream_fence()
        sum_blocks(partial, 0, dweight)

    return rms_norm_backward_cpu


CPU_FORWARD = _launch.CpuDrivers(_make_forward_cpu)
CPU_BACKWARD = _launch.CpuDrivers(_make_backward_cpu)


def numba_forward(x, weight, eps, y, rstd):
    """The ``numba`` backend of ``rms_norm`` (float16: the float32 driver on upcast copies, as ``c``)."""
    xc, wc, yc = _nk._up(x), _flat(_nk._up(weight)), _nk._compute(y)
    t = xc.dtype
    driver = CPU_FORWARD.get((t == np.float32, wc is not None), xc.size)
    driver(xc, placeholder(t) if wc is None else wc, yc, rstd, np.float64(eps), t.type(0),
           stream_rows(2 * yc.nbytes, yc.shape[-1] * yc.itemsize))
    _nk._copy_back(y, yc)


def numba_backward(dy, x, weight, rstd, dx, dweight):
    """The ``numba`` backend of ``rms_norm_backward``."""
    rows, n = x.shape
    if n == 0:
        return
    dyc, xc, wc, dxc, dwc = _nk._up(dy), _nk._up(x), _flat(_nk._up(weight)), _nk._compute(dx), _nk._compute(dweight)
    per, n_blocks = nr.row_blocks(rows, nr.ROW_BLOCKS, nr.MIN_BLOCK_ROWS)
    driver = CPU_BACKWARD.get((xc.dtype == np.float32, wc is not None), xc.size)
    driver(dyc, xc, placeholder(xc.dtype) if wc is None else wc, rstd, dxc, dwc, scratch("rms_norm", (n_blocks, 1, n)),
           per, stream_rows(3 * dxc.nbytes, dxc.shape[-1] * dxc.itemsize))
    _nk._copy_back(dx, dxc)
    _nk._copy_back(dweight, dwc)


# ---------------------------------------------------------------- CUDA

def _make_forward_cuda(threads, has_w):
    global cuda
    cuda = _launch.cuda()
    view, cast = _launch.device_view(), _launch.device_cast()
    block_sum, rstd_of, apply = nr.block_sum.cuda, nr.rstd_of.cuda, nr.rms_apply.cuda
    f64 = nr.FLOAT64

    def rms_norm_cuda(px, pw, py, prstd, rows, n, eps, proto):
        shared = cuda.shared.array(threads, f64)
        t, step = cuda.threadIdx.x, cuda.blockDim.x
        w, rstd = view(pw, 0, n, proto), view(prstd, 0, rows, proto)
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            x, y = view(px, r * n, (r + 1) * n, proto), view(py, r * n, (r + 1) * n, proto)
            s = 0.0
            for j in range(t, n, step):
                v = np.float64(x[j])
                s += v * v
            rs = cast(rstd_of(block_sum(shared, s) / n, eps), proto)
            for j in range(t, n, step):
                apply(x, w, y, j, rs, has_w)
            if t == 0:
                rstd[r] = rs

    return rms_norm_cuda


def _make_backward_cuda(threads, has_w):
    global cuda
    cuda = _launch.cuda()
    view = _launch.device_view()
    block_sum, dot_term, coef = nr.block_sum.cuda, nr.dot_term.cuda, nr.rms_backward_coef.cuda
    backward_apply = nr.rms_backward_apply.cuda
    f64 = nr.FLOAT64

    def rms_norm_backward_cuda(pdy, px, pw, prstd, pdx, ppartial, rows, n, per, proto):
        shared = cuda.shared.array(threads, f64)
        t, step, blk = cuda.threadIdx.x, cuda.blockDim.x, cuda.blockIdx.x
        w, rstd = view(pw, 0, n, proto), view(prstd, 0, rows, proto)
        pwt = view(ppartial, blk * n, (blk + 1) * n, 0.0)
        r0 = blk * per
        for r in range(r0, min(r0 + per, rows)):
            lo, hi = r * n, (r + 1) * n
            dy, x, dx = view(pdy, lo, hi, proto), view(px, lo, hi, proto), view(pdx, lo, hi, proto)
            s = 0.0
            for j in range(t, n, step):
                s += dot_term(dy, w, x, j, has_w)
            rs = rstd[r]
            mean_gxhat = coef(block_sum(shared, s), rs, n)
            for j in range(t, n, step):
                term = np.float64(backward_apply(dy, x, w, dx, j, rs, mean_gxhat, has_w))
                if r == r0:  # the block's first row initializes its partial row: no memset
                    pwt[j] = term
                else:
                    pwt[j] += term

    return rms_norm_backward_cuda


CUDA_FORWARD = _launch.CudaKernels(_make_forward_cuda)
CUDA_BACKWARD = _launch.CudaKernels(_make_backward_cuda)


def cuda_forward(x, weight, eps, y, rstd):
    """The ``cuda`` backend of ``rms_norm``: one launch, a block per row."""
    rows, n = x.shape
    threads = nr.threads()
    with _launch.device_context(x.device):
        _launch.launch(CUDA_FORWARD.get((threads, weight is not None)), min(rows, _launch.MAX_BLOCKS), threads,
                       address(x), address(weight), address(y), address(rstd), np.int64(rows), np.int64(n),
                       np.float64(eps), x.dtype.type(0))


def cuda_backward(dy, x, weight, rstd, dx, dweight):
    """The ``cuda`` backend of ``rms_norm_backward``: the fused row kernel, then the column sums."""
    rows, n = x.shape
    if n == 0:
        return
    per, n_blocks = nr.row_blocks(rows, nr.GPU_ROW_BLOCKS, nr.GPU_MIN_BLOCK_ROWS)
    partial = device_scratch("rms_norm", n_blocks * n, x.device)
    threads = nr.threads()
    with _launch.device_context(x.device):
        if n_blocks:
            _launch.launch(CUDA_BACKWARD.get((threads, weight is not None)), n_blocks, threads, address(dy),
                           address(x), address(weight), address(rstd), address(dx), address(partial),
                           np.int64(rows), np.int64(n), np.int64(per), x.dtype.type(0))
        launch_sum_blocks(partial, 1, dweight, None, n_blocks, n, x.dtype)


# ---------------------------------------------------------------- PTX check (tests/test_cuda_ptx.py)

def ptx_cases(dtype):
    """(label, Python function, argument types) of every CUDA kernel of this module for ``dtype``."""
    from numba import float64, from_dtype, int64, uint64

    t = from_dtype(np.dtype(dtype))
    threads = nr.NORM_THREADS
    cases = []
    for has_w in (False, True):
        cases.append((f"rms_norm w{int(has_w)}", CUDA_FORWARD.make(threads, has_w),
                      (uint64,) * 4 + (int64, int64, float64, t)))
        cases.append((f"rms_norm_backward w{int(has_w)}", CUDA_BACKWARD.make(threads, has_w),
                      (uint64,) * 6 + (int64, int64, int64, t)))
    return cases

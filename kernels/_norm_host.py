"""Host-side pieces the Numba norm kernels share (:mod:`layer_norm`, :mod:`rms_norm`, :mod:`batch_norm`): work
arrays kept between calls, placeholders for absent weights, device addresses, and the fixed-order sum of the
backward's per-block partial rows on both targets."""
import numba
import numpy as np

from pyopt.kernels import _launch
from pyopt.kernels import _norm_rules as nr

cuda = None  # numba.cuda, bound by the CUDA factory (see kernels/adam.py)
_EMPTY = {}
_scratch = {}


def placeholder(dtype):
    """A zero-length array standing in for an absent weight or bias (the kernels' flags keep it unread)."""
    dtype = np.dtype(dtype)
    if dtype not in _EMPTY:
        _EMPTY[dtype] = np.empty(0, dtype)
    return _EMPTY[dtype]


def scratch(key, shape, dtype=np.float64):
    """A host work array reused between calls of the same shape: fresh large allocations fault their pages in on
    every call.  The GIL is held while a driver runs (they are not ``nogil``), so one array per key is enough."""
    a = _scratch.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = _scratch[key] = np.empty(shape, dtype)
    return a


def device_scratch(key, n_values, device, dtype=np.float64):
    """A device work array of at least ``n_values`` elements, kept between calls (one per key and device).  Every
    launch of these kernels goes to the default stream, so calls in sequence never use it at the same time."""
    cu = _launch.cuda()
    a = _scratch.get((key, device))
    if a is None or a.size < n_values or a.dtype != dtype:
        with _launch.device_context(device):
            a = _scratch[(key, device)] = cu.device_array(max(n_values, 1), dtype)
    return a


def address(a):
    """The data address of a device array (0 for None), as the kernels' uint64 argument."""
    from pyopt.arrays import address_of

    return np.uint64(address_of(a))


FLUSH_ROWS = 16  # float32 backward: rows whose dweight/dbias terms a float32 partial row holds (NORM_FLUSH_ROWS)


@numba.njit(inline="always", error_model="numpy")
def flush(partial, chunk):
    """``partial[j] += chunk[j]`` (float64), ``chunk[j] = 0``: the float32 backward adds each row's dweight/dbias
    terms to float32 partial rows and flushes them into the block's float64 partials every ``FLUSH_ROWS`` rows
    (counted from the block's first row, and at its end), as ``csrc/norm_common.h`` ``NORM_FLUSH_ROWS``: a float32
    sum of at most 16 terms (~1e-6 relative) where widening every term would cost a float64 add per element."""
    for j in range(partial.shape[0]):
        partial[j] += np.float64(chunk[j])
        chunk[j] = 0


@numba.njit(inline="always")
def sum_blocks(partial, k, out):
    """``out[j] = sum over blocks of partial[block, k, j]``, in block order (CPU, after the parallel loop)."""
    acc = np.zeros(out.shape[0])
    for blk in range(partial.shape[0]):
        p = partial[blk, k]
        for j in range(out.shape[0]):
            acc[j] += p[j]
    for j in range(out.shape[0]):
        out[j] = acc[j]


def _make_sum_blocks_cuda(parts):
    """``out_k[j] = sum over blocks of partial[block, k, j]`` in block order for ``k < parts`` (LayerNorm 2,
    RMSNorm 1): a thread per column, grid-stride."""
    global cuda
    cuda = _launch.cuda()
    view, cast = _launch.device_view(), _launch.device_cast()

    def sum_blocks_cuda(ppartial, pout0, pout1, n_blocks, n, proto):
        partial = view(ppartial, 0, n_blocks * parts * n, 0.0)
        out0, out1 = view(pout0, 0, n, proto), view(pout1, 0, n, proto)
        for j in range(cuda.grid(1), n, cuda.gridsize(1)):
            for k in range(parts):
                s = 0.0
                for blk in range(n_blocks):
                    s += partial[(blk * parts + k) * n + j]
                if k == 0:
                    out0[j] = cast(s, proto)
                else:
                    out1[j] = cast(s, proto)

    return sum_blocks_cuda


CUDA_SUM_BLOCKS = _launch.CudaKernels(_make_sum_blocks_cuda)


def launch_sum_blocks(partial, parts, out0, out1, n_blocks, n, dtype):
    """The second stage of the LayerNorm/RMSNorm backward on the GPU (``out1`` None for one part)."""
    threads = nr.threads()
    _launch.launch(CUDA_SUM_BLOCKS.get((parts,)), max(1, min(-(-n // threads), _launch.MAX_BLOCKS)), threads,
                   address(partial), address(out0), address(out1), np.int64(n_blocks), np.int64(n),
                   np.dtype(dtype).type(0))


def ptx_cases(dtype):
    from numba import from_dtype, int64, uint64

    t = from_dtype(np.dtype(dtype))
    return [(f"sum_blocks {parts}", CUDA_SUM_BLOCKS.make(parts), (uint64,) * 3 + (int64, int64, t))
            for parts in (1, 2)]

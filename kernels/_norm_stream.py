"""Memory hints of the CPU norm drivers: streamed (non-temporal) output rows, as ``csrc/norm_common.h``
``NORM_STORE_ROW``, and software prefetches of the next row or run.

A call whose arrays take more than half the last-level cache (:func:`stream_outputs`, C's
``pyopt_stream_outputs`` with the same cache size) would see its outputs leave the cache before anyone reads
them, and a plain store first reads each output line from memory (write-allocate), so an output costs twice its
bytes.  Such calls compute each output row into a small work row that stays in L1/L2 and copy it out with
:func:`stream_copy`: non-temporal stores of whole 64-byte lines (the ``nontemporal`` hint on aligned 16-byte
vector stores: ``movntps``/``movntpd`` on x86, plain stores where a target has none), plain stores for the
elements before the first line boundary and after the last.  A LayerNorm forward then moves 8 bytes per float32
element instead of 12.  Values are the same either way; only where they go differs.  Each parallel item ends
with :func:`stream_fence`, so its streamed stores are visible before the item counts as done.

:func:`prefetch` asks for a line that the driver reads next, so that its first pass finds it in cache instead of
waiting on memory: a streaming call's row sums prefetch the next row chunk by chunk as they go
(:mod:`pyopt.kernels._norm_lanes`, as C's centred pass does), and BatchNorm's channel path prefetches the start of
the run a few runs ahead (:func:`prefetch_lines`: runs lie a whole plane apart, where the hardware prefetcher does
not follow).
"""
import platform

import numba
from llvmlite import ir
from numba.core import cgutils
from numba.core import types as nbtypes
from numba.core.extending import intrinsic

from pyopt import _c

LINE_BYTES = 64
VECTOR_BYTES = 16              # the stores' width: SSE2's movntps/movntpd, on every x86-64
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
DEFAULT_CACHE_BYTES = 32 << 20  # the last-level cache assumed without the C extension (this project's machines)
STREAM_MIN_ROW_BYTES = 2048     # stream_rows: 512 float32 values


def cache_bytes():
    """The last-level cache size the C kernels plan with (:func:`pyopt._c.cache_bytes`, which tests override),
    or ``DEFAULT_CACHE_BYTES`` without the C extension."""
    return _c.cache_bytes() if _c.available() else DEFAULT_CACHE_BYTES


def stream_outputs(bytes_touched):
    """Whether a call touching ``bytes_touched`` bytes streams its outputs: more than half the cache."""
    return bytes_touched > cache_bytes() // 2


def stream_rows(bytes_touched, row_bytes):
    """Whether a row-wise call (LayerNorm, RMSNorm) streams its output rows: :func:`stream_outputs`, and rows of
    ``STREAM_MIN_ROW_BYTES`` or more.  A short row spends more on its trip through the work row and its plain head
    and tail than streaming saves (LayerNorm forward, float32, 2 threads, plain / streamed: 65536 x 128 4.4 / 10.1
    ms, 16384 x 384 3.6 / 4.1, 16384 x 512 5.9 / 5.1, 8192 x 768 3.4 / 3.0)."""
    return stream_outputs(bytes_touched) and row_bytes >= STREAM_MIN_ROW_BYTES


@intrinsic
def _stream_lines(typingctx, dst, src, begin, lines):
    """``dst[begin + k] = src[begin + k]`` for ``k < lines * LINE_BYTES / itemsize`` by non-temporal vector stores
    (``dst + begin`` 64-byte aligned; ``src`` read unaligned)."""
    arrays = (dst, src)
    if not (all(isinstance(a, nbtypes.Array) and a.ndim == 1 and a.layout == "C" for a in arrays)
            and isinstance(dst.dtype, nbtypes.Float) and src.dtype == dst.dtype
            and isinstance(begin, nbtypes.Integer) and isinstance(lines, nbtypes.Integer)):
        return None

    def codegen(context, builder, signature, args):
        dst_t, src_t, begin_t, lines_t = signature.args
        d = context.make_array(dst_t)(context, builder, args[0])
        s = context.make_array(src_t)(context, builder, args[1])
        begin_v = context.cast(builder, args[2], begin_t, nbtypes.intp)
        lines_v = context.cast(builder, args[3], lines_t, nbtypes.intp)
        elem = context.get_value_type(dst_t.dtype)
        width = VECTOR_BYTES // context.get_abi_sizeof(elem)
        vec_ptr = ir.PointerType(ir.VectorType(elem, width))
        per_line = LINE_BYTES // VECTOR_BYTES
        base_d = builder.gep(d.data, [begin_v])
        base_s = builder.gep(s.data, [begin_v])
        nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        with cgutils.for_range(builder, builder.mul(lines_v, ir.Constant(lines_v.type, per_line))) as loop:
            offset = builder.mul(loop.index, ir.Constant(loop.index.type, width))
            value = builder.load(builder.bitcast(builder.gep(base_s, [offset]), vec_ptr),
                                 align=context.get_abi_sizeof(elem))
            store = builder.store(value, builder.bitcast(builder.gep(base_d, [offset]), vec_ptr), align=VECTOR_BYTES)
            store.set_metadata("nontemporal", nontemporal)
        return context.get_dummy_value()

    return nbtypes.void(dst, src, begin, lines), codegen


@intrinsic
def stream_fence(typingctx):
    """Orders the streamed stores before whatever follows: ``sfence`` on x86 (a ``lock``-prefixed instruction, which
    LLVM emits for a fence there, is not documented to drain write-combining buffers), a fence elsewhere."""

    def codegen(context, builder, signature, args):
        if X86:
            sfence = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                    "llvm.x86.sse.sfence")
            builder.call(sfence, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return nbtypes.void(), codegen


@intrinsic
def prefetch(typingctx, a, index):
    """``llvm.prefetch`` of element ``index`` of the 1-D array ``a`` (for reading, into L2: locality 2)."""
    if not (isinstance(a, nbtypes.Array) and a.ndim == 1 and isinstance(index, nbtypes.Integer)):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], nbtypes.intp)
        address = builder.bitcast(builder.gep(arr.data, [i]), ir.IntType(8).as_pointer())
        int32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [address.type, int32,
                                                                                            int32, int32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [address, ir.Constant(int32, 0), ir.Constant(int32, 2), ir.Constant(int32, 1)])
        return context.get_dummy_value()

    return nbtypes.void(a, index), codegen


@numba.njit(inline="always", error_model="numpy")
def prefetch_lines(a, max_lines):
    """Prefetches the first ``max_lines`` 64-byte lines of the 1-D array ``a`` (all of it when shorter)."""
    step = LINE_BYTES // a.itemsize
    for i in range(0, min(a.shape[0], max_lines * step), step):
        prefetch(a, i)


@numba.njit(inline="always", error_model="numpy")
def stream_copy(dst, src):
    """``dst[:] = src`` (1-D, C-contiguous, same length and dtype), the 64-byte lines of ``dst`` by non-temporal
    stores (:func:`_stream_lines`), the head before the first line boundary and the tail by plain stores (all of
    ``dst`` when its elements straddle lines)."""
    n = dst.shape[0]
    size = dst.itemsize
    per_line = LINE_BYTES // size
    misalign = dst.ctypes.data % LINE_BYTES
    head = n if misalign % size else min((LINE_BYTES - misalign) % LINE_BYTES // size, n)
    for j in range(head):
        dst[j] = src[j]
    lines = (n - head) // per_line
    _stream_lines(dst, src, head, lines)
    for j in range(head + lines * per_line, n):
        dst[j] = src[j]

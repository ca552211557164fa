"""How the optimizer kernels walk the tensors of a group: one parallel region (CPU) or one launch (GPU) per call.

**Multi-tensor layout: a pointer table, not an arena.**  The optimizer API updates the caller's arrays in place
(NumPy arrays, CuPy arrays, Numba device arrays, torch tensors); an arena would have to own the parameters and
hand views back, which a caller that already holds its tensors (a torch model) cannot accept.  So each call gets

- ``ptrs``: uint64 ``(n_roles, n_tensors)``, the data address of every tensor of every role (0 for an absent one),
- ``pieces``: int64 ``(n_pieces, 3)`` rows ``(tensor, begin, end)`` that cut every tensor into pieces of at most
  ``CPU_PIECE``/``GPU_PIECE`` elements, never across a tensor boundary,

all built once per tensor list (the optimizer keeps its tensor lists between steps) and, for the GPU, copied to
the device once.  The CPU driver is a ``prange`` over pieces (numba splits the range into one contiguous block per
thread, like the C kernels' slices of the concatenated index space); the GPU kernel gives each block one piece at
a time (block-stride over pieces, thread-stride inside one).  A kernel turns an address back into an array with
:func:`host_view` / :func:`device_view` (an ``inttoptr`` and ``carray``); elementwise results do not depend on the
partition, so any thread count and any piece size give the same bits.

Per-tensor scalars that change every step (Adam's bias corrections, Adagrad's decayed rate, SGD's first-step
flag) go to the CPU kernels as small host arrays.  The GPU kernels take them as plain kernel arguments when they
are the same for every tensor of the call (the usual training loop) and only otherwise as a device table copied
per step (:class:`DeviceScalars`), so the common step is one launch and no copy.

**Simulator.**  Under ``NUMBA_ENABLE_CUDASIM=1`` the kernels run as Python: :func:`device_view` then builds a NumPy
view from the address, launches use small blocks (the simulator runs a Python thread per GPU thread), and the
rules' ``sqrt`` keeps NumPy float32 scalars in float32 (``_elementwise``).
"""
import contextlib
import ctypes
import os
import threading
import warnings
import zlib

import numba
import numpy as np
from numba.core import types as nbtypes
from numba.core.extending import intrinsic

from pyopt import runtime

SERIAL_MAX_ELEMENTS = 1 << 15   # below this a call runs on the calling thread (the C kernels' threshold)
CPU_PIECE = 1 << 16             # elements per prange iteration: 256 KiB of float32, many pieces per thread
# elements per block iteration and threads per block: on an H200, Adam at 2^28 float32 reached 90% of a
# device-to-device copy with 16k/128 against 84% with 64k/256 (bench/gpu_check.py sweeps these)
GPU_PIECE = 1 << 14
GPU_THREADS = 128
SIM_THREADS = 32                # the simulator starts one Python thread per GPU thread: keep blocks small
MAX_BLOCKS = 1 << 20

# No fastmath on the CPU: every flag that would speed these loops up changes bits (contract: FMA; reassoc,
# arcp: x/y -> x*(1/y); afn: approximate sqrt), and nnan/ninf would break NaN propagation.  The loops are
# memory-bound and vectorize without any of them (error_model="numpy" is what removes the division check).
CPU_OPTIONS = dict(fastmath=False, error_model="numpy", cache=True)


def _source_stamp():
    """A digest of the sources the cached CPU drivers inline.  numba's on-disk cache checks only the file of the
    cached function, so each driver closes over this value: editing a rule or a helper gives new cache keys."""
    here = os.path.dirname(os.path.abspath(__file__))
    crc = 0
    for name in ("_elementwise.py", "_launch.py", "_norm_rules.py", "_norm_lanes.py", "_norm_host.py",
                 "_norm_stream.py"):
        with open(os.path.join(here, name), "rb") as f:
            crc = zlib.crc32(f.read(), crc)
    return crc


SOURCE_STAMP = _source_stamp()
runtime.apply_to_numba()  # a pyopt.set_num_threads() made before numba loaded


def simulator():
    """True under ``NUMBA_ENABLE_CUDASIM=1`` (read by numba at import)."""
    return bool(numba.config.ENABLE_CUDASIM)


def piece_table(numel, piece):
    """int64 rows ``(tensor, begin, end)``: every tensor cut into pieces of at most ``piece`` elements."""
    numel = np.asarray(numel, dtype=np.int64)
    counts = (numel + piece - 1) // piece
    tensor = np.repeat(np.arange(numel.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    begin = (np.arange(tensor.size, dtype=np.int64) - np.repeat(first, counts)) * piece
    end = np.minimum(begin + piece, numel[tensor])
    return np.ascontiguousarray(np.stack([tensor, begin, end], axis=1))


def _view_intrinsic(intrinsic_for_target, np_cfarray):
    """``view(address, begin, end, proto)``: elements ``[begin, end)`` of the array of ``proto``'s dtype (a float
    scalar argument of the kernel) at ``address``, as a 1-D C-contiguous array; an intrinsic for one target,
    lowered with that target's ``carray`` code (``np_cfarray``).  An intrinsic rather than ``carray`` itself:
    numba-cuda compiles an ``@overload`` such as its ``carray`` through a dispatcher that asks for the current
    device, which a machine without a GPU does not have, so ``compile_ptx`` would fail there.

    A view per piece, indexed from 0: with ``range(begin, end)`` as indices numba cannot prove them non-negative,
    keeps its negative-index wraparound, and LLVM does not vectorize the loop."""

    def view(typingctx, address, begin, end, proto):
        if not (isinstance(address, nbtypes.Integer) and isinstance(begin, nbtypes.Integer)
                and isinstance(end, nbtypes.Integer) and isinstance(proto, nbtypes.Float)):
            return None
        array_type = nbtypes.Array(proto, 1, "C")
        pointer_type = nbtypes.CPointer(proto)

        def codegen(context, builder, signature, args):
            address_value, begin_value, end_value, _ = args
            begin_value = context.cast(builder, begin_value, signature.args[1], nbtypes.intp)
            end_value = context.cast(builder, end_value, signature.args[2], nbtypes.intp)
            base = builder.inttoptr(address_value, context.get_value_type(pointer_type))
            pointer = builder.gep(base, [begin_value], inbounds=True)
            length = builder.sub(end_value, begin_value)
            return np_cfarray(context, builder, array_type(pointer_type, nbtypes.intp), [pointer, length])

        return array_type(address, begin, end, proto), codegen

    return intrinsic_for_target(view)


def _host_view():
    from numba.np.arrayobj import np_cfarray

    return _view_intrinsic(intrinsic, np_cfarray)


host_view = _host_view()


def _cast_intrinsic(intrinsic_for_target):
    """``cast(value, proto)``: ``value`` converted to the type of the float scalar ``proto`` (C's ``(T)value``),
    for kernels written once for float32 and float64.  An intrinsic for the same reason as :func:`host_view`."""

    def cast(typingctx, value, proto):
        if not (isinstance(value, nbtypes.Number) and isinstance(proto, nbtypes.Float)):
            return None

        def codegen(context, builder, signature, args):
            return context.cast(builder, args[0], signature.args[0], signature.args[1])

        return proto(value, proto), codegen

    return intrinsic_for_target(cast)


host_cast = _cast_intrinsic(intrinsic)


# ---------------------------------------------------------------- CPU

def _check_cacheable(py_func):
    """Refuses a driver closure whose cells are not plain constants (or the loop function).  numba's on-disk
    cache keys a closure by the pickle of its cells; a cell holding a jitted function pickles differently in
    every process, so such a driver would compile afresh (seconds per kernel) in every new process."""
    for name, cell in zip(py_func.__code__.co_freevars, py_func.__closure__ or ()):
        value = cell.cell_contents
        if not (value is range or value is numba.prange or isinstance(value, (bool, int, float, str))):
            raise TypeError(f"{py_func.__qualname__} closes over {name} ({type(value).__name__}): only constants "
                            "keep numba's on-disk cache key the same from one process to the next")


class CpuDrivers:
    """Compiled CPU drivers of one family, by mode flags and serial/parallel.

    ``make(loop, stamp, *flags)`` returns the driver's Python function, a closure whose outer loop is
    ``for k in loop(n_pieces)``; ``loop`` is ``numba.prange`` or ``range``, and the flags are constants of the
    closure (numba folds them, and they are part of the on-disk cache key together with ``stamp``).
    """

    def __init__(self, make):
        self.make = make
        self.compiled = {}

    def get(self, flags, total):
        parallel = total > SERIAL_MAX_ELEMENTS and numba.get_num_threads() > 1
        key = (tuple(flags), parallel)
        fn = self.compiled.get(key)
        if fn is None:
            py_func = self.make(numba.prange if parallel else range, SOURCE_STAMP, *flags)
            _check_cacheable(py_func)
            fn = self.compiled[key] = numba.njit(parallel=parallel, **CPU_OPTIONS)(py_func)
        return fn

    def dispatchers(self):
        return list(self.compiled.values())


def host_tables(tensors, roles):
    """(pieces, ptrs) of a tensor list for the CPU drivers, built once per list."""
    return tensors.cached(("numba-host", roles), lambda: (
        piece_table(tensors.numel, CPU_PIECE), tensors.address_table(roles)))


# ---------------------------------------------------------------- CUDA

def cuda():
    from numba import cuda as module

    return module


def _sim_view(address, begin, end, proto):
    dtype = np.dtype(type(proto))
    n = int(end) - int(begin)
    if n <= 0:
        return np.empty(0, dtype)
    start = int(address) + int(begin) * dtype.itemsize
    return np.frombuffer((ctypes.c_byte * (n * dtype.itemsize)).from_address(start), dtype)


_device_view = None
_device_cast = None


def _sim_cast(value, proto):
    return type(proto)(value)


def device_cast():
    """The device-side :data:`host_cast` (a Python function under the simulator)."""
    global _device_cast
    if _device_cast is None:
        if simulator():
            _device_cast = _sim_cast
        else:
            device_view()  # the same import fix-ups
            try:
                from numba.cuda.extending import intrinsic as cuda_intrinsic
            except ImportError:
                from numba.core.extending import intrinsic as cuda_intrinsic
            _device_cast = _cast_intrinsic(cuda_intrinsic)
    return _device_cast


def device_view():
    """The device-side :func:`host_view`: a CUDA intrinsic (a Python function under the simulator)."""
    global _device_view
    if _device_view is None:
        if simulator():
            _device_view = _sim_view
        else:
            if not hasattr(np, "row_stack"):
                # numba-cuda <= 0.30 registers an overload of np.row_stack when its array module loads; NumPy 2.5
                # removed that alias of np.vstack, and the import fails without it
                np.row_stack = np.vstack
            try:  # numba-cuda >= 0.2x keeps its own copy of numba's core
                from numba.cuda.extending import intrinsic as cuda_intrinsic
                from numba.cuda.np.arrayobj import np_cfarray
            except ImportError:  # older numba-cuda shares numba's
                from numba.core.extending import intrinsic as cuda_intrinsic
                from numba.np.arrayobj import np_cfarray

            _device_view = _view_intrinsic(cuda_intrinsic, np_cfarray)
    return _device_view


_exact = threading.local()
_patched = False


def _install_fma_switch():
    """NVVM contracts a*b+c into an FMA unless told ``-fma=0``, and numba-cuda passes that option only as part of
    ``fastmath`` (with flush-to-zero and approximate division and sqrt).  This wraps ``nvvm.compile_ir`` so that
    compilations inside :func:`exact_math` add ``fma=False``; every other kernel of the process compiles as
    before.  Then a kernel rounds after every operation, as the reference does, and matches it bit for bit.
    If numba-cuda moves the function, kernels still compile (with FMA: within tolerance, not bitwise)."""
    global _patched
    if _patched:
        return
    _patched = True
    try:
        from numba.cuda.cudadrv import nvvm
    except ImportError:
        return
    original = getattr(nvvm, "compile_ir", None)
    if original is None:
        return

    def compile_ir(llvmir, **options):
        if getattr(_exact, "active", False) and not options.get("fastmath"):
            options.setdefault("fma", False)
        return original(llvmir, **options)

    compile_ir.__wrapped__ = original
    nvvm.compile_ir = compile_ir


@contextlib.contextmanager
def exact_math():
    """Compile (lazily, at a launch) or ``compile_ptx`` inside this block to get IEEE-exact kernels without FMA."""
    if simulator():
        yield
        return
    _install_fma_switch()
    previous = getattr(_exact, "active", False)
    _exact.active = True
    try:
        yield
    finally:
        _exact.active = previous


class CudaKernels:
    """Lazily decorated ``@cuda.jit`` kernels of one family, by mode flags (``make(*flags)`` returns the Python
    function; the rule and :func:`device_view` are bound into it by the family module)."""

    def __init__(self, make):
        self.make = make
        self.compiled = {}

    def get(self, flags):
        key = tuple(flags)
        kernel = self.compiled.get(key)
        if kernel is None:
            kernel = self.compiled[key] = _cuda_jit(self.make(*flags))
        return kernel


def _cuda_jit(py_func):
    """``cuda.jit`` without link-time optimization.  With nvJitLink present numba-cuda defaults to LTO, and then
    nvJitLink generates the code and contracts FMAs whatever NVVM was told (seen on an H200: last-bit differences
    from the reference); without it the PTX that NVVM makes under :func:`exact_math` (``mul.rn``, ``add.rn``:
    explicitly rounded, which ptxas never fuses) is what runs.  These kernels link nothing, so LTO gains nothing."""
    cu = cuda()
    if simulator():
        return cu.jit(py_func)
    try:
        return cu.jit(py_func, lto=False)
    except TypeError:  # a numba-cuda from before LTO existed
        return cu.jit(py_func)


class DeviceTables:
    """A tensor list's pieces and pointer table on its device, and the launch shape."""

    def __init__(self, tensors, roles):
        cu = cuda()
        self.device = tensors.device
        pieces = piece_table(tensors.numel, GPU_PIECE)
        self.n_pieces = pieces.shape[0]
        with self.context():
            self.pieces = cu.to_device(pieces)
            self.ptrs = cu.to_device(tensors.address_table(roles))
        self.threads = SIM_THREADS if simulator() else GPU_THREADS
        self.blocks = max(1, min(self.n_pieces, MAX_BLOCKS))

    def context(self):
        """The tensors' device made current for the block (a no-op when it already is, or is unknown)."""
        return device_context(self.device)

    def launch(self, kernel, *args):
        if self.n_pieces == 0:
            return
        with self.context():
            launch(kernel, self.blocks, self.threads, self.pieces, self.ptrs, *args)


def device_context(device):
    """The CUDA device with ordinal ``device`` made current (a no-op when it already is, or is None)."""
    if device is None or simulator():
        return contextlib.nullcontext()
    cu = cuda()
    if cu.get_current_device().id == device:
        return contextlib.nullcontext()
    return cu.gpus[device]


def launch(kernel, blocks, threads, *args):
    """``kernel[blocks, threads](*args)`` compiled (on first use) without FMA contraction (:func:`exact_math`)."""
    with exact_math():
        if blocks >= 256:
            kernel[blocks, threads](*args)
        else:
            # a small call is a small grid: numba-cuda warns of low occupancy at every such launch
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*under-utilization")
                kernel[blocks, threads](*args)
    if os.environ.get("PYOPT_CUDA_SYNC") == "1":  # debugging: surface a launch's error at its call
        cuda().synchronize()


def device_tables(tensors, roles):
    return tensors.cached(("cuda", roles), lambda: DeviceTables(tensors, roles))


class DeviceScalars:
    """Per-tensor scalars of a GPU call: ``k`` rows of ``n`` values in the arrays' dtype.

    :meth:`args` returns ``(uniform, table, v_0 ... v_{k-1})`` for the kernel: when each row holds one value the
    values travel as kernel arguments and the (cached) table is not touched; otherwise the rows are copied to the
    device table and the kernel reads ``table[j, t]``.
    """

    def __init__(self, tables, k, n, dtype):
        self.tables = tables
        self.host = np.zeros((k, max(n, 1)), dtype=dtype)
        self.device_table = None
        self.dtype = np.dtype(dtype).type

    def args(self):
        host = self.host
        if host.shape[1] == 1 or (host == host[:, :1]).all():
            if self.device_table is None:
                with self.tables.context():
                    self.device_table = cuda().to_device(host)
            return (True, self.device_table, *(self.dtype(x) for x in host[:, 0]))
        with self.tables.context():
            if self.device_table is None:
                self.device_table = cuda().to_device(host)
            else:
                self.device_table.copy_to_device(host)
        return (False, self.device_table, *(self.dtype(x) for x in host[:, 0]))


# ---------------------------------------------------------------- the backends' entry points

def prepare_host(tensors, drivers, roles, flags, scalars, k, fill):
    """The ``numba`` backend's call for one tensor list and one set of hyper-parameters.

    ``fill(per_tensor, rows)`` writes the ``k`` per-tensor values of a step into ``rows`` (``k`` x ``n``, the
    arrays' dtype); the driver gets ``(pieces, ptrs, *rows, *scalars)``.
    """
    pieces, ptrs = host_tables(tensors, roles)
    driver = drivers.get(flags, tensors.total)
    rows = np.zeros((k, tensors.n), dtype=tensors.dtype)
    row_list = tuple(rows)

    def call(per_tensor):
        if k:
            fill(per_tensor, row_list)
        driver(pieces, ptrs, *row_list, *scalars)

    return call


def prepare_device(tensors, kernels, roles, flags, scalars, k, fill):
    """The ``cuda`` backend's call: one launch, with ``(pieces, ptrs, uniform, table, *values0, *scalars)`` when
    there are ``k`` per-tensor values (:class:`DeviceScalars`), else ``(pieces, ptrs, *scalars)``."""
    tables = device_tables(tensors, roles)
    kernel = kernels.get(flags)
    if not k:
        return lambda per_tensor: tables.launch(kernel, *scalars)
    values = DeviceScalars(tables, k, tensors.n, tensors.dtype)
    row_list = tuple(values.host[:, :tensors.n])

    def call(per_tensor):
        fill(per_tensor, row_list)
        tables.launch(kernel, *values.args(), *scalars)

    return call


def fill_per_step(fn, steps, rows):
    """``rows[j][t] = fn(steps[t])[j]``, with ``fn`` (float64 maths on the host) called once per distinct step and
    each value rounded once to the rows' dtype, as the C kernels' ``(T)`` casts do."""
    steps = np.asarray(steps)
    if steps.size == 0:
        return
    first = int(steps[0])
    if steps.size == 1 or steps.strides == (0,) or (steps == first).all():
        for row, value in zip(rows, fn(first)):
            row.fill(value)
        return
    values = {int(s): fn(int(s)) for s in np.unique(steps)}
    for j, row in enumerate(rows):
        row[...] = [values[int(s)][j] for s in steps]


def kernel_signature(k, scalars, dtype):
    """The argument types a CUDA kernel is compiled for at launch: ``(pieces, ptrs[, uniform, table, *values],
    *scalars)`` (what :class:`DeviceTables` and :class:`DeviceScalars` pass), for ``cuda.compile_ptx``."""
    dtype = np.dtype(dtype)
    args = [numba.typeof(np.zeros((1, 3), np.int64)), numba.typeof(np.zeros((1, 1), np.uint64))]
    if k:
        args += [nbtypes.boolean, numba.typeof(np.zeros((k, 1), dtype))] + [numba.from_dtype(dtype)] * k
    args += [numba.typeof(s) for s in scalars]
    return tuple(args)

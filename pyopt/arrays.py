"""Array checks, adapters for device arrays, and the aligned tensor lists that kernels receive.

Every check here runs before any kernel writes memory, so a call that raises leaves every array as it was
(RELIABILITY.md: validate everything before touching memory).

Host arrays are NumPy arrays; every check takes a fast path for them first, so the NumPy path costs what it did.
Device arrays are anything with ``__cuda_array_interface__`` (CuPy, Numba device arrays, torch CUDA tensors), and
the simulator's fake device arrays under ``NUMBA_ENABLE_CUDASIM=1``.  They are described by :class:`DeviceArray`
(shape, dtype, address, contiguity, writability, device) without importing their library or copying them; the
kernels then work on them in place through their addresses.
"""
import math
import numbers
import sys

import numpy as np

from pyopt import _c

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class DeviceArray:
    """What pyopt needs of a device array, read from its ``__cuda_array_interface__``."""

    __slots__ = ("obj", "shape", "dtype", "ptr", "readonly", "strides", "device", "size", "nbytes")

    def __init__(self, obj, interface, device):
        self.obj = obj
        self.shape = tuple(interface["shape"])
        self.dtype = np.dtype(interface["typestr"])
        self.ptr, self.readonly = interface["data"]
        self.strides = interface.get("strides")
        self.device = device
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize

    @property
    def c_contiguous(self):
        return self.strides is None or contiguous_strides(self.shape, self.strides, self.dtype.itemsize)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def itemsize(self):
        return self.dtype.itemsize

    def reshape(self, *shape):
        """The same C-contiguous memory as another shape (what the norm kernels receive: a view, no copy)."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple) else tuple(shape)
        if -1 in shape:
            known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
            shape = tuple(self.size // max(known, 1) if d == -1 else d for d in shape)
        if not self.c_contiguous or int(np.prod(shape, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot view a device array of shape {self.shape} as {shape}")
        view = DeviceArray.__new__(DeviceArray)
        view.obj, view.shape, view.dtype, view.ptr, view.readonly = self.obj, shape, self.dtype, self.ptr, self.readonly
        view.strides, view.device, view.size, view.nbytes = None, self.device, self.size, self.nbytes
        return view

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, self.readonly), "version": 3,
                "strides": self.strides}


def contiguous_strides(shape, strides, itemsize):
    """Whether ``strides`` (bytes) lay ``shape`` out in C order without gaps (extents of 1 and 0 ignored)."""
    if int(np.prod(shape, dtype=np.int64)) <= 1:
        return True
    step = itemsize
    for extent, stride in zip(reversed(shape), reversed(strides)):
        if extent != 1 and stride != step:
            return False
        step *= extent
    return True


def _module_of(a):
    return type(a).__module__.split(".", 1)[0]


def _is_simulated(a):
    return type(a).__module__.startswith("numba.cuda.simulator")


def device_array(a):
    """A :class:`DeviceArray` for a device array, None for anything else (NumPy arrays included)."""
    if isinstance(a, np.ndarray) or a is None:
        return None
    if isinstance(a, DeviceArray):
        return a
    if _is_simulated(a):
        # the simulator's FakeCUDAArray wraps a host NumPy array and has no __cuda_array_interface__
        host = a._ary
        return DeviceArray(a, {**host.__array_interface__, "data": (host.ctypes.data, False)}, 0)
    module = _module_of(a)
    try:
        if module == "torch":
            if not a.is_cuda:
                return None
            # detach(): a tensor that requires grad refuses the interface; the detached one shares its memory
            return DeviceArray(a, a.detach().__cuda_array_interface__, a.device.index)
        interface = a.__cuda_array_interface__
    except (AttributeError, RuntimeError, TypeError):
        return None
    device = None
    if module == "cupy":
        device = a.device.id
    return DeviceArray(a, interface, device)


def is_device_array(a):
    return device_array(a) is not None


def device_name(a):
    """``cpu`` for NumPy, ``cuda:N`` (or ``cuda``) for a device array."""
    info = device_array(a)
    if info is None:
        return "cpu"
    return "cuda" if info.device is None else f"cuda:{info.device}"


def _describe(a):
    """(shape, dtype, device) of a NumPy or device array, or None for anything else."""
    if isinstance(a, np.ndarray):
        return a.shape, a.dtype, "cpu"
    info = device_array(a)
    if info is None:
        return None
    return info.shape, info.dtype, device_name(a)


def dtype_of(a):
    return a.dtype if isinstance(a, np.ndarray) else device_array(a).dtype


def numel_of(a):
    return a.size if isinstance(a, np.ndarray) else device_array(a).size


def address_of(a):
    """The data address of a NumPy or device array (0 for None)."""
    if a is None:
        return 0
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    if isinstance(a, DeviceArray):
        return a.ptr
    return device_array(a).ptr


def empty_device(like, shape, dtype):
    """A new C-contiguous array of ``shape`` and ``dtype`` on the device of the device array ``like``, of ``like``'s
    kind: a torch tensor for a torch tensor, a CuPy array for a CuPy array, a Numba device array otherwise (Numba
    device arrays, other ``__cuda_array_interface__`` objects, the simulator's arrays).  Nothing is copied."""
    info = like if isinstance(like, DeviceArray) else device_array(like)
    obj, dtype = info.obj, np.dtype(dtype)
    module = _module_of(obj)
    if module == "torch":
        torch = sys.modules["torch"]
        return torch.empty(shape, dtype=getattr(torch, dtype.name), device=obj.device)
    if module == "cupy":
        cupy = sys.modules["cupy"]
        with obj.device:
            return cupy.empty(shape, dtype=dtype)
    from numba import cuda

    if _is_simulated(obj):
        return cuda.device_array(shape, dtype=dtype)
    with _device_context(info.device):
        return cuda.device_array(shape, dtype=dtype)


def real_number(value, name, what="a real number"):
    """A hyper-parameter that must be a real number (any ``numbers.Real`` but a bool), as a Python float, or
    TypeError naming ``name`` (``what``: the rule it breaks).  Ints past the float range read as +-inf, for the
    caller's range check to refuse.  Callers test the result with ``math.isfinite``: ``np.isfinite`` on a scalar is
    a ufunc call, ~14 us of a norm call's Python when the caches are cold, as they are after a large kernel (so the
    common concrete types are tested before the slower ``numbers.Real`` check too)."""
    common = isinstance(value, (float, int, np.floating, np.integer))
    if isinstance(value, (bool, np.bool_)) or not (common or isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_float_array(a, name, *, writable=False):
    """A C-contiguous float32/float64 array (NumPy or device), writable if the op writes it."""
    if isinstance(a, np.ndarray):
        dtype, contiguous, readonly, strides, shape = a.dtype, a.flags.c_contiguous, not a.flags.writeable, \
            a.strides, a.shape
    else:
        info = device_array(a)
        if info is None:
            raise TypeError(f"{name} must be a numpy.ndarray or a CUDA array (__cuda_array_interface__), "
                            f"got {type(a).__name__}")
        dtype, contiguous, readonly, strides, shape = info.dtype, info.c_contiguous, info.readonly, \
            info.strides, info.shape
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    if not contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (got strides {strides} for shape {shape}); "
            "pass a contiguous copy and copy the result back if it is a view")
    if writable and readonly:
        raise ValueError(f"{name} is read-only but this op writes it in place")


def check_like(a, ref, name, ref_name):
    """``a`` has the shape, dtype and device of ``ref`` (never reinterpreted: a float64 buffer is not 2n floats)."""
    if isinstance(a, np.ndarray) and isinstance(ref, np.ndarray):
        shape, dtype, device, ref_shape, ref_dtype, ref_device = a.shape, a.dtype, "cpu", ref.shape, ref.dtype, "cpu"
    else:
        described = _describe(a)
        if described is None:
            raise TypeError(f"{name} must be a numpy.ndarray or a CUDA array (__cuda_array_interface__), "
                            f"got {type(a).__name__}")
        (shape, dtype, device), (ref_shape, ref_dtype, ref_device) = described, _describe(ref)
    if device != ref_device:
        raise ValueError(f"{name} is on {device} but {ref_name} is on {ref_device}")
    if dtype != ref_dtype:
        raise TypeError(f"{name} has dtype {dtype} but {ref_name} has dtype {ref_dtype}")
    if shape != ref_shape:
        raise ValueError(f"{name} has shape {shape} but {ref_name} has shape {ref_shape}")


def overlapping_pair(arrays):
    """The first pair (i, j) of ``arrays`` (None entries ignored, indices kept) whose memory overlaps, or None.
    Device arrays are compared by address too (host and device addresses never coincide under CUDA's unified
    virtual addressing)."""
    if all(a is None or isinstance(a, np.ndarray) for a in arrays):
        indexed = [(k, a) for k, a in enumerate(arrays) if a is not None and a.size]
        if _c.available():
            pair = _c.find_overlap([a for _, a in indexed])
            return None if pair is None else (indexed[pair[0]][0], indexed[pair[1]][0])
        bounds = sorted((a.__array_interface__["data"][0], a.nbytes, k) for k, a in indexed)
    else:
        bounds = []
        for k, a in enumerate(arrays):
            if a is None:
                continue
            if isinstance(a, np.ndarray):
                if a.size:
                    bounds.append((a.__array_interface__["data"][0], a.nbytes, k))
            else:
                info = device_array(a)
                if info.size:
                    bounds.append((info.ptr, info.nbytes, k))
        bounds.sort()
    # a sweep over ranges sorted by address
    reach_end, reach_k = None, None
    for start, size, k in bounds:
        if reach_end is not None and start < reach_end:
            return min(reach_k, k), max(reach_k, k)
        if reach_end is None or start + size > reach_end:
            reach_end, reach_k = start + size, k
    return None


def zeros_like(a):
    """A zero-filled array like ``a`` on its device, made by ``a``'s own library where pyopt knows it."""
    return full_like(a, 0)


def full_like(a, value):
    """An array like ``a`` filled with ``value``, on ``a``'s device (CuPy and torch arrays from their library,
    other device arrays as Numba device arrays)."""
    if isinstance(a, np.ndarray):
        return np.full_like(a, value)
    info = device_array(a)
    if info is None:
        raise TypeError(f"expected a NumPy or CUDA array, got {type(a).__name__}")
    module = _module_of(a)
    if module == "torch":
        return sys.modules["torch"].full_like(a, value, memory_format=sys.modules["torch"].contiguous_format)
    if module == "cupy":
        return sys.modules["cupy"].full(info.shape, value, dtype=info.dtype)
    from numba import cuda

    host = np.full(info.shape, value, dtype=info.dtype)
    if _is_simulated(a):
        return cuda.to_device(host)
    with _device_context(info.device):
        if value == 0:
            out = cuda.device_array(info.shape, dtype=info.dtype)
            if out.size:
                cuda.driver.device_memset(out, 0, out.nbytes)
            return out
        return cuda.to_device(host)


def copy_like(value, like):
    """A new C-contiguous array with ``value``'s contents, in ``like``'s dtype and on ``like``'s device (used when
    a state dict is loaded: NumPy values onto a device, device values onto the host, or device to device)."""
    if isinstance(like, np.ndarray):
        if not isinstance(value, np.ndarray) and device_array(value) is not None:
            value = to_host(value)
        return np.array(value, dtype=like.dtype, order="C", copy=True)
    info = device_array(like)
    module = _module_of(like)
    if module == "torch":
        torch = sys.modules["torch"]
        source = value.detach() if _module_of(value) == "torch" else value
        return torch.as_tensor(source, dtype=like.dtype, device=like.device).clone(
            memory_format=torch.contiguous_format)
    if module == "cupy":
        return sys.modules["cupy"].array(value, dtype=info.dtype, order="C", copy=True)
    from numba import cuda

    if device_array(value) is not None:
        value = to_host(value)
    host = np.ascontiguousarray(np.asarray(value), dtype=info.dtype)
    if _is_simulated(like):
        return cuda.to_device(host)
    with _device_context(info.device):
        return cuda.to_device(host)


def to_host(a):
    """A NumPy copy of any array pyopt accepts (for checks and state dicts, never on the step path)."""
    if isinstance(a, np.ndarray):
        return a
    if _is_simulated(a):
        return a.copy_to_host()
    module = _module_of(a)
    if module == "torch":
        return a.detach().cpu().numpy()
    if module == "cupy":
        return a.get()
    from numba import cuda

    return cuda.as_cuda_array(a).copy_to_host()


def shape_of(a):
    return a.shape if isinstance(a, np.ndarray) else device_array(a).shape


def _device_context(ordinal):
    import contextlib

    from numba import cuda

    if ordinal is None or cuda.get_current_device().id == ordinal:
        return contextlib.nullcontext()
    return cuda.gpus[ordinal]


class TensorList:
    """Aligned lists of arrays for one kernel call, by role (``param``, ``grad``, ``exp_avg``...), one dtype and
    one device (host NumPy arrays, or device arrays of one GPU).

    Pointer tables for the C backend are built on first use and kept until a role's arrays are replaced, so a
    training loop that reuses its arrays pays for them once.
    """

    def __init__(self, roles):
        self.roles = {role: list(arrays) for role, arrays in roles.items()}
        params = self.roles["param"]
        self.n = len(params)
        self.dtype = dtype_of(params[0]) if params else np.dtype(np.float32)
        # device: the CUDA ordinal of device arrays (None for host arrays, and for device arrays whose library
        # does not say which GPU: the current one)
        self.on_device = bool(params) and not isinstance(params[0], np.ndarray)
        self.device = device_array(params[0]).device if self.on_device else None
        self.numel = np.fromiter(map(numel_of, params), dtype=np.int64, count=self.n)
        self.total = int(self.numel.sum())
        self._tables = {}
        self._cache = {}
        self._prepared_for = self._prepared = None

    def prepared(self, hparams, build):
        """What a kernel derived from ``hparams`` (a cffi struct, a function pointer...), rebuilt only when it is
        handed a different hparams object: optimizers pass the same dict while the hyper-parameters stay put."""
        if self._prepared_for is not hparams:
            self._prepared = build()
            self._prepared_for = hparams
        return self._prepared

    def cached(self, key, build):
        """``build()``, computed once per list and key (tables a backend derives from the arrays alone)."""
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = build()
        return value

    def address_table(self, roles):
        """uint64 ``(len(roles), n)``: the data address of each role's arrays, 0 for a missing role or entry."""
        table = np.zeros((len(roles), self.n), dtype=np.uint64)
        for j, role in enumerate(roles):
            arrays = self.roles.get(role)
            if arrays:
                table[j] = [address_of(a) for a in arrays]
        return table

    def __getitem__(self, role):
        return self.roles[role]

    def replace(self, role, arrays):
        self.roles[role] = list(arrays)
        self._tables.pop(role, None)
        self._cache.clear()

    def table(self, role):
        """``void *[]`` of the role's data pointers (NULL for a missing role or entry)."""
        table = self._tables.get(role)
        if table is None:
            table = _c.pointer_table(self.roles.get(role) or [None] * self.n)
            self._tables[role] = table
        return table

    def numel_table(self):
        table = self._tables.get(None)
        if table is None:
            table = self._tables[None] = _c.int64s(self.numel)
        return table

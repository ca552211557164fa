"""Argument checks of the norm ops (LayerNorm, RMSNorm, BatchNorm): every check runs before any kernel writes,
so a call that raises leaves every array as it was (RELIABILITY.md rows 8-12 and 20-25).

Inputs that are not C-contiguous are copied (the kernels read rows and channel runs as contiguous memory);
outputs must be C-contiguous and writable (a strided output would need a copy-out that hides the cost the
caller asked to avoid with ``out=``), except BatchNorm's channels-last layouts (:func:`channel_layout`).

CUDA device arrays (anything with ``__cuda_array_interface__``: Numba device arrays, CuPy arrays, torch CUDA
tensors) are checked the same way without touching their memory (:class:`pyopt.arrays.DeviceArray` describes
them), with three differences: float16 is refused (the ``cuda`` kernels run float32 and float64), inputs that
are not contiguous are refused rather than copied (a copy would need the array's own library), and the kernels
receive :class:`~pyopt.arrays.DeviceArray` views (address, shape, dtype).  Every array of a call must be on the
same device (:func:`check_devices`); BatchNorm's ``num_batches_tracked`` counter stays a host array.
"""
import math
import operator

import numpy as np

from pyopt import arrays
from pyopt.reference.layer_norm import stat_dtype

NORM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
DEVICE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_EXPECTED = "a numpy.ndarray or a CUDA array (__cuda_array_interface__)"


def _describe(a):
    return f"{type(a).__name__}" if not isinstance(a, np.ndarray) else f"array of dtype {a.dtype}"


def _device_info(a, name):
    """The :class:`~pyopt.arrays.DeviceArray` of a non-NumPy argument, or TypeError naming it."""
    info = arrays.device_array(a)
    if info is None:
        raise TypeError(f"{name} must be {_EXPECTED}, got {_describe(a)}")
    return info


def on_device(a):
    """True for a CUDA device array (the call then runs on the ``cuda`` backend)."""
    return not isinstance(a, np.ndarray) and arrays.device_array(a) is not None


def check_dtype(a, name, dtype=None, device=False):
    """``a`` is an ndarray of float16/32/64, or (``device``: x is a device array, or this is x) a device array of
    float32/64; of ``dtype`` when given."""
    if isinstance(a, np.ndarray):
        if dtype is None and a.dtype not in NORM_DTYPES:
            raise TypeError(f"{name} must be float16, float32 or float64, got {a.dtype}")
        if dtype is not None and a.dtype != dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but must have dtype {np.dtype(dtype)}")
        return
    if not device:
        raise TypeError(f"{name} must be a numpy.ndarray, got {_describe(a)}")
    actual = _device_info(a, name).dtype
    if dtype is None and actual not in DEVICE_DTYPES:
        raise TypeError(f"{name} must be float32 or float64 (the cuda kernels have no float16 path), got {actual}")
    if dtype is not None and actual != dtype:
        raise TypeError(f"{name} has dtype {actual} but must have dtype {np.dtype(dtype)}")


def check_array(a, name, *, dtype=None, device=False):
    """A float16/32/64 ndarray (of ``dtype`` when given), returned C-contiguous (copied when it is not); with
    ``device``, a device array is accepted and returned as its :class:`~pyopt.arrays.DeviceArray` (it must already
    be C-contiguous)."""
    check_dtype(a, name, dtype, device)
    if isinstance(a, np.ndarray):
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)  # (ascontiguousarray makes 0-d arrays 1-d)
    info = arrays.device_array(a)
    if not info.c_contiguous:
        raise ValueError(f"{name} is a CUDA array that is not C-contiguous (strides {info.strides} for shape "
                         f"{info.shape}); pass a contiguous copy (pyopt does not copy device arrays)")
    return info


def numel(a):
    return a.size if isinstance(a, np.ndarray) else arrays.device_array(a).size


def flat(a):
    """An array (NumPy or device) as the 1-D view a kernel receives."""
    return a.reshape(-1) if isinstance(a, np.ndarray) else arrays.device_array(a).reshape(-1)


def kernel_view(a):
    """What a kernel receives for an array: itself (NumPy, None), a :class:`~pyopt.arrays.DeviceArray` for a device
    array."""
    return a if a is None or isinstance(a, np.ndarray) else arrays.device_array(a)


def check_devices(x, named):
    """Every array of ``named`` ((name, array) pairs, None skipped) is where ``x`` is: all NumPy, or all on one
    CUDA device.  Called for a device x (on the host path, the checks refuse anything but NumPy arrays)."""
    where = arrays.device_name(x)
    for name, a in named:
        if a is not None and arrays.device_name(a) != where:
            raise ValueError(f"{name} is on {arrays.device_name(a)} but x is on {where}")


def check_param(a, name, shape, dtype, what, device=False):
    """An optional per-feature/per-channel array (weight, bias, running stats, saved stats) of ``shape``."""
    if a is None:
        return None
    a = check_array(a, name, dtype=dtype, device=device)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape} but {what} is {tuple(shape)}")
    return a


def check_state(a, name, shape, dtype, device=False):
    """An optional in-place state array (BatchNorm's running stats): checked like a param, never copied (a device
    array is returned as its :class:`~pyopt.arrays.DeviceArray`)."""
    if a is None:
        return None
    check_dtype(a, name, dtype, device)
    info = a if isinstance(a, np.ndarray) else arrays.device_array(a)
    if info.shape != tuple(shape):
        raise ValueError(f"{name} has shape {info.shape} but the channel count is {tuple(shape)}")
    check_writable(a, name)
    if not (a.flags.c_contiguous if isinstance(a, np.ndarray) else info.c_contiguous):
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    return info


def check_output(out, name, shape, dtype, like=None):
    """``out`` if given (C-contiguous, writable, of ``shape`` and ``dtype``), else a new array: a NumPy array, or,
    when ``like`` is a device array (x's :class:`~pyopt.arrays.DeviceArray`), one on its device of its kind
    (:func:`pyopt.arrays.empty_device`)."""
    if like is None or isinstance(like, np.ndarray):
        if out is None:
            return np.empty(shape, dtype)
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {_describe(out)}")
        if out.dtype != dtype:
            raise TypeError(f"{name} has dtype {out.dtype} but must have dtype {np.dtype(dtype)}")
        if out.shape != tuple(shape):
            raise ValueError(f"{name} has shape {out.shape} but must have shape {tuple(shape)}")
        check_writable(out, name)
        if not out.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (got strides {out.strides} for shape {out.shape})")
        return out
    if out is None:
        return arrays.empty_device(like, shape, dtype)
    info = _device_info(out, name)
    if info.dtype != dtype:
        raise TypeError(f"{name} has dtype {info.dtype} but must have dtype {np.dtype(dtype)}")
    if info.shape != tuple(shape):
        raise ValueError(f"{name} has shape {info.shape} but must have shape {tuple(shape)}")
    check_writable(out, name)
    if not info.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (got strides {info.strides} for shape {info.shape})")
    return out


def check_writable(a, name):
    if isinstance(a, np.ndarray):
        if not a.flags.writeable:
            raise ValueError(f"{name} is read-only but this op writes it")
        if a.size > 1 and 0 in a.strides:
            raise ValueError(f"{name} has a zero stride (a broadcast view); an output must own each element")
        return
    info = _device_info(a, name)
    if info.readonly:
        raise ValueError(f"{name} is read-only but this op writes it")
    if info.size > 1 and 0 in (info.strides or ()):
        raise ValueError(f"{name} has a zero stride (a broadcast view); an output must own each element")


def check_eps(eps):
    value = arrays.real_number(eps, "eps", "a real number")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Invalid eps value: {value} (a finite number >= 0)")
    return value


def check_no_alias(outputs, others):
    """No output shares memory with another output or with any input (a fused kernel reads what it has not yet
    written).  ``outputs``/``others``: (name, array) pairs; None entries are skipped.  Bounds are compared, so
    interleaved strided views count as overlapping: refused, never silently wrong.  The arrays are all NumPy or
    device arrays but for BatchNorm's host counter (:func:`check_devices` ran first); the first output says which."""
    if isinstance(outputs[0][1], np.ndarray):
        outputs = [(n, a) for n, a in outputs if a is not None and a.size]
        others = [(n, a) for n, a in others if a is not None and a.size]
        overlap = np.may_share_memory
    else:
        outputs = [(n, a) for n, a in outputs if a is not None and numel(a)]
        others = [(n, a) for n, a in others if a is not None and numel(a)]
        overlap = _device_overlap
    for k, (name, out) in enumerate(outputs):
        for other_name, other in outputs[k + 1:] + others:
            if overlap(out, other):
                raise ValueError(f"{name} overlaps {other_name} in memory; outputs must not share memory with "
                                 "inputs or with other outputs")


def _device_overlap(a, b):
    """Byte ranges of two device arrays intersect (contiguous arrays: all the device path accepts); a host array
    (BatchNorm's counter) never overlaps device memory."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return False
    a, b = arrays.device_array(a), arrays.device_array(b)
    return a.ptr < b.ptr + b.nbytes and b.ptr < a.ptr + a.nbytes


def check_normalized_shape(normalized_shape, x, name="x"):
    """normalized_shape as a tuple; it must be a non-empty suffix of ``x.shape``."""
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, (bool, np.bool_)):
        normalized_shape = (normalized_shape,)
    try:
        normalized_shape = tuple(operator.index(d) for d in normalized_shape)
    except TypeError:
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}") from None
    if not normalized_shape:
        raise ValueError("normalized_shape must have at least one dimension, got ()")
    k = len(normalized_shape)
    if x.ndim < k or x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(f"normalized_shape {normalized_shape} is not a suffix of {name}.shape {x.shape}")
    return normalized_shape


def rows_view(a, normalized_shape):
    """A C-contiguous array (NumPy or device) as (rows, features)."""
    if not isinstance(a, np.ndarray):
        a = arrays.device_array(a)
    return a.reshape(math.prod(a.shape[:a.ndim - len(normalized_shape)]), math.prod(normalized_shape))


def check_axis(axis, x):
    if not isinstance(x, np.ndarray):
        x = arrays.device_array(x)
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int, got {type(axis).__name__}") from None
    if x.ndim < 2:
        raise ValueError(f"BatchNorm expects an input with a batch and a channel axis, got shape {x.shape}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for an input of shape {x.shape}")
    return axis % x.ndim


class ChannelLayout:
    """How a BatchNorm input is laid out in memory: ``[outer][channels][inner]`` C-contiguous.

    A C-contiguous x gives outer = prod(shape[:axis]), inner = prod(shape[axis+1:]) (NCHW: inner = H*W; axis = -1:
    inner = 1).  An x whose channel axis is the innermost in memory (PyTorch's channels_last: an NCHW-shaped
    view of NHWC data) is used in place as [N*H*W][C][1], and its outputs get the same layout.  Anything else is
    copied to C order.
    """

    def __init__(self, x, axis):
        self.device = None if isinstance(x, np.ndarray) else arrays.device_array(x)
        info = x if self.device is None else self.device
        self.axis, self.shape, self.dtype = axis, info.shape, info.dtype
        self.channels = info.shape[axis]
        if self.device is None:
            self.moved = not x.flags.c_contiguous and np.moveaxis(x, axis, -1).flags.c_contiguous
        else:
            self.moved = not info.c_contiguous and arrays.contiguous_strides(
                self._moved(info.shape), self._moved(info.strides), info.itemsize)
        if self.moved:
            self.outer, self.inner = info.size // max(self.channels, 1), 1
        else:
            self.outer, self.inner = math.prod(info.shape[:axis]), math.prod(info.shape[axis + 1:])
        self.count = self.outer * self.inner  # values per channel

    def _moved(self, seq):
        """A shape or strides with the channel axis moved last."""
        seq = list(seq)
        return tuple(seq[:self.axis] + seq[self.axis + 1:] + [seq[self.axis]])

    def _device_work(self, a, name):
        info = _device_info(a, name)
        if info.shape != self.shape:
            raise ValueError(f"{name} has shape {info.shape} but x has shape {self.shape}")
        if info.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {info.dtype} but x has dtype {self.dtype}")
        if self.moved:
            if info.strides is None or not arrays.contiguous_strides(
                    self._moved(info.shape), self._moved(info.strides), info.itemsize):
                raise ValueError(f"{name} must have x's memory layout: channels-last (the channel axis innermost)")
            return info.reshape(self._moved(info.shape))
        if not info.c_contiguous:
            raise ValueError(f"{name} is a CUDA array that is neither C-contiguous nor channels-last (strides "
                             f"{info.strides}); pass a contiguous copy (pyopt does not copy device arrays)")
        return info

    def work(self, a, name):
        """The working (C-contiguous in this layout) form of an input of x's shape (a copy when needed; a device
        array is never copied: :class:`~pyopt.arrays.DeviceArray` of the working shape)."""
        if self.device is not None:
            return self._device_work(a, name)
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {_describe(a)}")
        if a.shape != self.shape:
            raise ValueError(f"{name} has shape {a.shape} but x has shape {self.shape}")
        if a.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but x has dtype {self.dtype}")
        w = np.moveaxis(a, self.axis, -1) if self.moved else a
        return w if w.flags.c_contiguous else np.ascontiguousarray(w)

    def output(self, out, name):
        """(user array, working array) of an output of x's shape; ``out`` must already have this layout."""
        if self.device is not None:
            return self._device_output(out, name)
        if out is None:
            if self.moved:
                w = np.empty(np.moveaxis(np.empty(self.shape, np.int8), self.axis, -1).shape, self.dtype)
                return np.moveaxis(w, -1, self.axis), w
            w = np.empty(self.shape, self.dtype)
            return w, w
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {_describe(out)}")
        if out.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {out.dtype} but x has dtype {self.dtype}")
        if out.shape != self.shape:
            raise ValueError(f"{name} has shape {out.shape} but x has shape {self.shape}")
        check_writable(out, name)
        w = np.moveaxis(out, self.axis, -1) if self.moved else out
        if not w.flags.c_contiguous:
            layout = "channels-last (the channel axis innermost in memory)" if self.moved else "C-contiguous"
            raise ValueError(f"{name} must have x's memory layout: {layout}")
        return out, w

    def _device_output(self, out, name):
        if out is None:
            if not self.moved:
                out = arrays.empty_device(self.device, self.shape, self.dtype)
            else:  # x's layout: the channel axis innermost, through the library's own strided view
                w = arrays.empty_device(self.device, self._moved(self.shape), self.dtype)
                if arrays._module_of(w) == "torch":
                    out = w.movedim(-1, self.axis)
                elif arrays._module_of(w) == "cupy":
                    out = arrays.sys.modules["cupy"].moveaxis(w, -1, self.axis)
                else:
                    raise ValueError(f"{name}: a channels-last output of a Numba device array cannot be made "
                                     "here; pass out= with x's layout")
        check_writable(out, name)
        return out, self._device_work(out, name)

    def dims(self):
        return self.outer, self.channels, self.inner


def check_momentum(momentum):
    if momentum is None:
        return None
    value = arrays.real_number(momentum, "momentum", "a real number or None")
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"Invalid momentum value: {value} (a number in [0, 1], or None)")
    return value


def check_counter(num_batches_tracked):
    """num_batches_tracked: a writable one-element integer NumPy array (PyTorch's buffer of the same name; a host
    array for device inputs too: momentum=None needs its value on the host)."""
    if num_batches_tracked is None:
        return None
    a = num_batches_tracked
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu" or a.size != 1:
        raise TypeError(f"num_batches_tracked must be a one-element integer numpy array, got {_describe(a)}"
                        + (f" of size {a.size}" if isinstance(a, np.ndarray) else ""))
    check_writable(a, "num_batches_tracked")
    if int(a.reshape(-1)[0]) < 0:
        raise ValueError(f"num_batches_tracked must be >= 0, got {int(a.reshape(-1)[0])}")
    return a


__all__ = ["NORM_DTYPES", "ChannelLayout", "check_array", "check_axis", "check_counter", "check_devices",
           "check_dtype", "check_eps", "check_momentum", "check_no_alias", "check_normalized_shape", "check_output",
           "check_param", "check_state", "check_writable", "flat", "kernel_view", "numel", "on_device", "rows_view", "stat_dtype"]

"""Argument checks of the norm ops (LayerNorm, RMSNorm, BatchNorm): every check runs before any kernel writes,
so a call that raises leaves every array as it was (RELIABILITY.md rows 8-12 and 20-25).

Inputs that are not C-contiguous are copied (the kernels read rows and channel runs as contiguous memory);
outputs must be C-contiguous and writable (a strided output would need a copy-out that hides the cost the
caller asked to avoid with ``out=``), except BatchNorm's channels-last layouts (:func:`channel_layout`).
"""
import math
import operator

import numpy as np

from pyopt.reference.layer_norm import stat_dtype

NORM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _describe(a):
    return f"{type(a).__name__}" if not isinstance(a, np.ndarray) else f"array of dtype {a.dtype}"


def check_dtype(a, name, dtype=None):
    """``a`` is an ndarray of float16/32/64 (of ``dtype`` when given)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {_describe(a)}")
    if dtype is None and a.dtype not in NORM_DTYPES:
        raise TypeError(f"{name} must be float16, float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but must have dtype {np.dtype(dtype)}")


def check_array(a, name, *, dtype=None):
    """A float16/32/64 ndarray (of ``dtype`` when given), returned C-contiguous (copied when it is not)."""
    check_dtype(a, name, dtype)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)  # (ascontiguousarray makes 0-d arrays 1-d)


def check_param(a, name, shape, dtype, what):
    """An optional per-feature/per-channel array (weight, bias, running stats, saved stats) of ``shape``."""
    if a is None:
        return None
    a = check_array(a, name, dtype=dtype)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape} but {what} is {tuple(shape)}")
    return a


def check_state(a, name, shape, dtype):
    """An optional in-place state array (BatchNorm's running stats): checked like a param, never copied."""
    if a is None:
        return None
    check_dtype(a, name, dtype)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape} but the channel count is {tuple(shape)}")
    check_writable(a, name)
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    return a


def check_output(out, name, shape, dtype):
    """``out`` if given (C-contiguous, writable, of ``shape`` and ``dtype``), else a new array."""
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


def check_writable(a, name):
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only but this op writes it")
    if a.size > 1 and 0 in a.strides:
        raise ValueError(f"{name} has a zero stride (a broadcast view); an output must own each element")


def check_eps(eps):
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"Invalid eps value: {eps} (a finite number >= 0)")
    return float(eps)


def check_no_alias(outputs, others):
    """No output shares memory with another output or with any input (a fused kernel reads what it has not yet
    written).  ``outputs``/``others``: (name, array) pairs; None entries are skipped.  Bounds are compared, so
    interleaved strided views count as overlapping: refused, never silently wrong."""
    outputs = [(n, a) for n, a in outputs if a is not None and a.size]
    others = [(n, a) for n, a in others if a is not None and a.size]
    for k, (name, out) in enumerate(outputs):
        for other_name, other in outputs[k + 1:] + others:
            if np.may_share_memory(out, other):
                raise ValueError(f"{name} overlaps {other_name} in memory; outputs must not share memory with "
                                 "inputs or with other outputs")


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
    """A C-contiguous array as (rows, features)."""
    return a.reshape(math.prod(a.shape[:a.ndim - len(normalized_shape)]), math.prod(normalized_shape))


def check_axis(axis, x):
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
        self.axis, self.shape, self.dtype = axis, x.shape, x.dtype
        self.channels = x.shape[axis]
        self.moved = not x.flags.c_contiguous and np.moveaxis(x, axis, -1).flags.c_contiguous
        if self.moved:
            self.outer, self.inner = x.size // max(self.channels, 1), 1
        else:
            self.outer, self.inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])
        self.count = self.outer * self.inner  # values per channel

    def work(self, a, name):
        """The working (C-contiguous in this layout) form of an input of x's shape (a copy when needed)."""
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

    def dims(self):
        return self.outer, self.channels, self.inner


def check_momentum(momentum):
    if momentum is None:
        return None
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, (int, float, np.integer, np.floating)):
        raise TypeError(f"momentum must be a real number or None, got {type(momentum).__name__}")
    if not (np.isfinite(momentum) and 0 <= momentum <= 1):
        raise ValueError(f"Invalid momentum value: {momentum} (a number in [0, 1], or None)")
    return float(momentum)


def check_counter(num_batches_tracked):
    """num_batches_tracked: a writable one-element integer array (PyTorch's buffer of the same name)."""
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


__all__ = ["NORM_DTYPES", "ChannelLayout", "check_array", "check_axis", "check_counter", "check_dtype",
           "check_eps", "check_momentum", "check_no_alias", "check_normalized_shape", "check_output", "check_param",
           "check_state", "check_writable", "rows_view", "stat_dtype"]

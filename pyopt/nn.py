"""Stateful norm layers: LayerNorm, RMSNorm and BatchNorm holding their parameters (and, for BatchNorm, the
running statistics), with PyTorch's constructor arguments, defaults and state names so a state dict can move
between the two.

A layer is called on an array (``y = layer(x)``), keeps what its backward needs, and ``layer.backward(dy)``
returns ``dx`` and stores the parameter gradients in ``layer.grads`` (``{"weight": ..., "bias": ...}``), ready
for an optimizer.  With ``reuse_outputs=True`` the layer writes ``y`` and ``dx`` into the same arrays on every
call while the shapes stay the same (fresh allocations above 32 MiB cost page faults on every call), so a
result is only valid until the next call.  The maths is :mod:`pyopt.functional`'s.
"""
import numpy as np

from pyopt import functional as F

__all__ = ["BatchNorm", "LayerNorm", "RMSNorm"]


class _NormLayer:
    def __init__(self, backend, reuse_outputs):
        self.backend = backend
        self.reuse_outputs = bool(reuse_outputs)
        self.training = True
        self.grads = {}
        self._saved = None
        self._buffers = {}

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def _buffer(self, name, shape, dtype, internal=False, like=None):
        """A reusable output array (the same object while shape, dtype and layout stay the same; ``like``: the
        memory layout of that array); None (a fresh output from the functional op) for a returned output unless
        reuse_outputs."""
        if not internal and not self.reuse_outputs:
            return None
        key = (tuple(shape), np.dtype(dtype), None if like is None else like.strides)
        entry = self._buffers.get(name)
        if entry is None or entry[0] != key:
            entry = self._buffers[name] = (key, np.empty(shape, dtype) if like is None else np.empty_like(like))
        return entry[1]

    def _require_forward(self):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before a forward")
        return self._saved

    def parameters(self):
        return [p for p in (getattr(self, "weight", None), getattr(self, "bias", None)) if p is not None]

    def state_dict(self):
        return {name: value.copy() for name, value in self._state().items() if value is not None}

    def load_state_dict(self, state):
        """Copies arrays of matching shape into the layer (in place: optimizers keep their references)."""
        own = {k: v for k, v in self._state().items() if v is not None}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            value = np.asarray(value)
            if value.shape != own[name].shape:
                raise ValueError(f"{name} has shape {value.shape} in the state dict but {own[name].shape} here")
        for name, value in state.items():
            own[name][...] = value


def _affine(shape, dtype, elementwise_affine, bias):
    weight = np.ones(shape, dtype) if elementwise_affine else None
    b = np.zeros(shape, dtype) if elementwise_affine and bias else None
    return weight, b


class LayerNorm(_NormLayer):
    """``torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)``."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *, dtype=np.float32,
                 backend=None, reuse_outputs=False):
        super().__init__(backend, reuse_outputs)
        self.normalized_shape = (normalized_shape,) if np.ndim(normalized_shape) == 0 else tuple(normalized_shape)
        self.eps = eps
        self.weight, self.bias = _affine(self.normalized_shape, dtype, elementwise_affine, bias)

    def _state(self):
        return {"weight": self.weight, "bias": self.bias}

    def __call__(self, x):
        lead = x.shape[:x.ndim - len(self.normalized_shape)]
        sd = np.float32 if x.dtype == np.float16 else x.dtype
        y, mean, rstd = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps,
                                     out=self._buffer("y", x.shape, x.dtype), mean=self._buffer("mean", lead, sd, True),
                                     rstd=self._buffer("rstd", lead, sd, True), backend=self.backend)
        self._saved = (x, mean, rstd)
        return y

    def backward(self, dy):
        x, mean, rstd = self._require_forward()
        dx, dw, db = F.layer_norm_backward(dy, x, self.weight, mean, rstd, self.normalized_shape,
                                           out=self._buffer("dx", x.shape, x.dtype), backend=self.backend)
        self.grads = {k: v for k, v in (("weight", dw if self.weight is not None else None),
                                        ("bias", db if self.bias is not None else None)) if v is not None}
        return dx


class RMSNorm(_NormLayer):
    """``torch.nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True)``."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, *, dtype=np.float32, backend=None,
                 reuse_outputs=False):
        super().__init__(backend, reuse_outputs)
        self.normalized_shape = (normalized_shape,) if np.ndim(normalized_shape) == 0 else tuple(normalized_shape)
        self.eps = eps
        self.weight, _ = _affine(self.normalized_shape, dtype, elementwise_affine, False)

    def _state(self):
        return {"weight": self.weight}

    def __call__(self, x):
        lead = x.shape[:x.ndim - len(self.normalized_shape)]
        sd = np.float32 if x.dtype == np.float16 else x.dtype
        y, rstd = F.rms_norm(x, self.normalized_shape, self.weight, self.eps,
                             out=self._buffer("y", x.shape, x.dtype), rstd=self._buffer("rstd", lead, sd, True),
                             backend=self.backend)
        self._saved = (x, rstd)
        return y

    def backward(self, dy):
        x, rstd = self._require_forward()
        dx, dw = F.rms_norm_backward(dy, x, self.weight, rstd, self.normalized_shape,
                                     out=self._buffer("dx", x.shape, x.dtype), backend=self.backend)
        self.grads = {"weight": dw} if self.weight is not None else {}
        return dx


class BatchNorm(_NormLayer):
    """``torch.nn.BatchNorm{1,2,3}d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)`` with the channel along ``axis`` (1: NCHW, -1: channels-last).

    ``momentum=None`` is the cumulative average over ``num_batches_tracked`` batches.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *, axis=1,
                 dtype=np.float32, backend=None, reuse_outputs=False):
        super().__init__(backend, reuse_outputs)
        self.num_features, self.eps, self.momentum, self.axis = int(num_features), eps, momentum, axis
        self.weight, self.bias = _affine((self.num_features,), dtype, affine, True)
        stat = np.float32 if np.dtype(dtype) == np.float16 else dtype
        self.running_mean = np.zeros(self.num_features, stat) if track_running_stats else None
        self.running_var = np.ones(self.num_features, stat) if track_running_stats else None
        self.num_batches_tracked = np.zeros((), np.int64) if track_running_stats else None

    def _state(self):
        return {"weight": self.weight, "bias": self.bias, "running_mean": self.running_mean,
                "running_var": self.running_var, "num_batches_tracked": self.num_batches_tracked}

    def __call__(self, x):
        sd = np.float32 if x.dtype == np.float16 else x.dtype
        y, save_mean, save_rstd = F.batch_norm(
            x, self.weight, self.bias, self.running_mean, self.running_var, training=self.training,
            momentum=self.momentum, eps=self.eps, axis=self.axis, num_batches_tracked=self.num_batches_tracked,
            out=self._buffer("y", x.shape, x.dtype, like=x),
            save_mean=self._buffer("save_mean", (self.num_features,), sd, True),
            save_rstd=self._buffer("save_rstd", (self.num_features,), sd, True), backend=self.backend)
        self._saved = (x, save_mean, save_rstd, self.training or self.running_mean is None)
        return y

    def backward(self, dy):
        x, save_mean, save_rstd, batch_stats = self._require_forward()
        dx, dw, db = F.batch_norm_backward(dy, x, self.weight, save_mean, save_rstd, training=batch_stats,
                                           axis=self.axis, out=self._buffer("dx", x.shape, x.dtype, like=x),
                                           backend=self.backend)
        self.grads = {"weight": dw, "bias": db} if self.weight is not None else {}
        return dx

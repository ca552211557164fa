"""RMSprop in Numba: a parallel CPU driver and a CUDA kernel around one rule
(:func:`pyopt.kernels._elementwise.rmsprop_update`; maths and docs: :mod:`pyopt.reference.rmsprop`).

Mode flags (centered, momentum on, weight decay, which lerp form) are constants of each compiled driver; the rule
does not depend on the step, so a call has no per-tensor values.  Bytes per element (fp32): 20, +8 centered,
+8 with momentum.
"""
import itertools

import numpy as np

from pyopt.kernels import _launch
from pyopt.kernels._elementwise import lerp_weight, rmsprop_update

ROLES = ("param", "grad", "square_avg", "grad_avg", "momentum_buffer")
_rule = rmsprop_update.cpu
_view = _launch.host_view
# numba.cuda, bound by _make_cuda (a module global, which the simulator can swap for its own): the CPU driver
# never imports numba-cuda
cuda = None


def _make_cpu(loop, stamp, centered, has_momentum, decay, low_w):
    def rmsprop_cpu(pieces, ptrs, gsign, alpha, one_minus_alpha, w, one_minus_w, eps, weight_decay, momentum,
                    neg_lr):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        for k in loop(pieces.shape[0]):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = _view(ptrs[0, t], begin, end, eps)
            g = _view(ptrs[1, t], begin, end, eps)
            s = _view(ptrs[2, t], begin, end, eps)
            a = _view(ptrs[3, t], begin, end, eps) if centered else s
            b = _view(ptrs[4, t], begin, end, eps) if has_momentum else s
            for i in range(end - begin):
                _rule(p, g, s, a, b, i, gsign, alpha, one_minus_alpha, w, one_minus_w, eps, weight_decay, momentum,
                      neg_lr, centered, has_momentum, decay, low_w)

    return rmsprop_cpu


def _make_cuda(centered, has_momentum, decay, low_w):
    global cuda
    cuda = _launch.cuda()
    rule = rmsprop_update.cuda
    view = _launch.device_view()

    def rmsprop_cuda(pieces, ptrs, gsign, alpha, one_minus_alpha, w, one_minus_w, eps, weight_decay, momentum,
                     neg_lr):
        for k in range(cuda.blockIdx.x, pieces.shape[0], cuda.gridDim.x):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = view(ptrs[0, t], begin, end, eps)
            g = view(ptrs[1, t], begin, end, eps)
            s = view(ptrs[2, t], begin, end, eps)
            a = view(ptrs[3, t], begin, end, eps) if centered else s
            b = view(ptrs[4, t], begin, end, eps) if has_momentum else s
            for i in range(cuda.threadIdx.x, end - begin, cuda.blockDim.x):
                rule(p, g, s, a, b, i, gsign, alpha, one_minus_alpha, w, one_minus_w, eps, weight_decay, momentum,
                     neg_lr, centered, has_momentum, decay, low_w)

    return rmsprop_cuda


CPU = _launch.CpuDrivers(_make_cpu)
CUDA = _launch.CudaKernels(_make_cuda)
# every combination of mode flags a call can produce (the PTX check compiles each)
FLAG_SPACE = tuple(itertools.product((False, True), repeat=4))


def cuda_signature(dtype):
    """The argument types of the CUDA kernel for ``dtype`` arrays (for ``cuda.compile_ptx``)."""
    _, scalars = _constants(dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False), dtype)
    return _launch.kernel_signature(0, scalars, dtype)


def _constants(hparams, dtype):
    t = np.dtype(dtype).type
    alpha = hparams["alpha"]
    # lerp's weight is 1 - alpha rounded to the dtype, as the reference (and ATen) round a Python scalar weight
    w, one_minus_w, low_w = lerp_weight(1 - alpha, dtype)
    has_momentum = hparams["momentum"] > 0
    flags = (bool(hparams["centered"]), has_momentum, hparams["weight_decay"] != 0, low_w)
    scalars = (t(-1 if hparams["maximize"] else 1), t(alpha), t(1 - alpha), w, one_minus_w, t(hparams["eps"]),
               t(hparams["weight_decay"]), t(hparams["momentum"]), t(-hparams["lr"]))
    return flags, scalars


def numba_step(tensors, hparams, per_tensor):
    """The ``numba`` backend of ``rmsprop``: one parallel region for the whole tensor list."""
    tensors.prepared(hparams, lambda: _launch.prepare_host(
        tensors, CPU, ROLES, *_constants(hparams, tensors.dtype), 0, None))(per_tensor)


def cuda_step(tensors, hparams, per_tensor):
    """The ``cuda`` backend of ``rmsprop``: one launch for the whole tensor list."""
    tensors.prepared(hparams, lambda: _launch.prepare_device(
        tensors, CUDA, ROLES, *_constants(hparams, tensors.dtype), 0, None))(per_tensor)

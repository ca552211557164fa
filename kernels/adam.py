"""Adam and AdamW in Numba: a parallel CPU driver and a CUDA kernel around one rule
(:func:`pyopt.kernels._elementwise.adam_update`; maths and docs: :mod:`pyopt.reference.adam`).

Mode flags (weight-decay mode, amsgrad, which lerp form) are constants of each compiled driver; the per-tensor
scalars ``-lr/(1-beta1^t)`` and ``sqrt(1-beta2^t)`` are computed on the host in float64 once per distinct step
and rounded to the arrays' dtype, as the C kernel does.  Bytes per element (fp32): 28 (amsgrad 36).
"""
import itertools

import numpy as np

from pyopt.kernels import _launch
from pyopt.kernels._elementwise import DECAY_DECOUPLED, DECAY_L2, DECAY_NONE, adam_update, lerp_weight
from pyopt.reference.adam import bias_corrections

ROLES = ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
_rule = adam_update.cpu
_view = _launch.host_view
# numba.cuda, bound by _make_cuda (a module global, which the simulator can swap for its own): the CPU driver
# never imports numba-cuda
cuda = None


def _make_cpu(loop, stamp, decay, amsgrad, low_w):
    def adam_cpu(pieces, ptrs, neg_step_size, bias_correction2_sqrt, gsign, w, one_minus_w, beta2,
                 one_minus_beta2, weight_decay, decay_factor, eps):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        for k in loop(pieces.shape[0]):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = _view(ptrs[0, t], begin, end, eps)
            g = _view(ptrs[1, t], begin, end, eps)
            m = _view(ptrs[2, t], begin, end, eps)
            v = _view(ptrs[3, t], begin, end, eps)
            vmax = _view(ptrs[4, t], begin, end, eps) if amsgrad else v
            nss = neg_step_size[t]
            bc2 = bias_correction2_sqrt[t]
            for i in range(end - begin):
                _rule(p, g, m, v, vmax, i, gsign, w, one_minus_w, beta2, one_minus_beta2, weight_decay,
                      decay_factor, nss, bc2, eps, decay, amsgrad, low_w)

    return adam_cpu


def _make_cuda(decay, amsgrad, low_w):
    global cuda
    cuda = _launch.cuda()
    rule = adam_update.cuda
    view = _launch.device_view()

    def adam_cuda(pieces, ptrs, uniform, scalars, neg_step_size0, bias_correction2_sqrt0, gsign, w,
                  one_minus_w, beta2, one_minus_beta2, weight_decay, decay_factor, eps):
        for k in range(cuda.blockIdx.x, pieces.shape[0], cuda.gridDim.x):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = view(ptrs[0, t], begin, end, eps)
            g = view(ptrs[1, t], begin, end, eps)
            m = view(ptrs[2, t], begin, end, eps)
            v = view(ptrs[3, t], begin, end, eps)
            vmax = view(ptrs[4, t], begin, end, eps) if amsgrad else v
            nss = neg_step_size0
            bc2 = bias_correction2_sqrt0
            if not uniform:
                nss = scalars[0, t]
                bc2 = scalars[1, t]
            for i in range(cuda.threadIdx.x, end - begin, cuda.blockDim.x):
                rule(p, g, m, v, vmax, i, gsign, w, one_minus_w, beta2, one_minus_beta2, weight_decay,
                     decay_factor, nss, bc2, eps, decay, amsgrad, low_w)

    return adam_cuda


CPU = _launch.CpuDrivers(_make_cpu)
CUDA = _launch.CudaKernels(_make_cuda)
# every combination of mode flags a call can produce (the PTX check compiles each)
FLAG_SPACE = tuple(itertools.product((DECAY_NONE, DECAY_DECOUPLED, DECAY_L2), (False, True), (False, True)))


def cuda_signature(dtype):
    """The argument types of the CUDA kernel for ``dtype`` arrays (for ``cuda.compile_ptx``)."""
    _, scalars = _constants(dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=False), dtype)
    return _launch.kernel_signature(2, scalars, dtype)


def _constants(hparams, dtype):
    """(mode flags, scalar arguments in ``dtype``) of a call."""
    t = np.dtype(dtype).type
    beta1, beta2 = hparams["betas"]
    lr, weight_decay = hparams["lr"], hparams["weight_decay"]
    if weight_decay == 0:
        decay = DECAY_NONE
    else:
        decay = DECAY_DECOUPLED if hparams["decoupled_weight_decay"] else DECAY_L2
    w, one_minus_w, low_w = lerp_weight(1 - beta1, dtype)
    flags = (decay, bool(hparams["amsgrad"]), low_w)
    scalars = (t(-1 if hparams["maximize"] else 1), w, one_minus_w, t(beta2), t(1 - beta2), t(weight_decay),
               t(1 - lr * weight_decay), t(hparams["eps"]))
    return flags, scalars


def _fill(hparams):
    """Writes a step's ``-lr/(1-beta1^t)`` and ``sqrt(1-beta2^t)`` per tensor (float64 maths, then rounded)."""
    lr, (beta1, beta2) = hparams["lr"], hparams["betas"]

    def scalars(step):
        step_size, bias_correction2_sqrt = bias_corrections(lr, beta1, beta2, step)
        return -step_size, bias_correction2_sqrt

    return lambda per_tensor, rows: _launch.fill_per_step(scalars, per_tensor["step"], rows)


def numba_step(tensors, hparams, per_tensor):
    """The ``numba`` backend of ``adam``: one parallel region for the whole tensor list."""
    tensors.prepared(hparams, lambda: _launch.prepare_host(
        tensors, CPU, ROLES, *_constants(hparams, tensors.dtype), 2, _fill(hparams)))(per_tensor)


def cuda_step(tensors, hparams, per_tensor):
    """The ``cuda`` backend of ``adam``: one launch for the whole tensor list."""
    tensors.prepared(hparams, lambda: _launch.prepare_device(
        tensors, CUDA, ROLES, *_constants(hparams, tensors.dtype), 2, _fill(hparams)))(per_tensor)

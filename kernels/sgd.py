"""SGD with momentum in Numba: a parallel CPU driver and a CUDA kernel around one rule
(:func:`pyopt.kernels._elementwise.sgd_update`; maths and docs: :mod:`pyopt.reference.sgd`).

Mode flags (momentum on, Nesterov, weight decay) are constants of each compiled driver.  The first-step flag is
per tensor (params join a momentum run at different times), so each piece picks one of two specialised inner
loops from its tensor's flag.  Bytes per element (fp32): 12 without momentum, 20 with it.
"""
import itertools

import numpy as np

from pyopt.kernels import _launch
from pyopt.kernels._elementwise import sgd_update

ROLES = ("param", "grad", "momentum_buffer")
_rule = sgd_update.cpu
_view = _launch.host_view
# numba.cuda, bound by _make_cuda (a module global, which the simulator can swap for its own): the CPU driver
# never imports numba-cuda
cuda = None


def _make_cpu(loop, stamp, has_momentum, nesterov, decay):
    def sgd_cpu(pieces, ptrs, first_step, gsign, weight_decay, momentum, one_minus_dampening, neg_lr):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        for k in loop(pieces.shape[0]):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = _view(ptrs[0, t], begin, end, neg_lr)
            g = _view(ptrs[1, t], begin, end, neg_lr)
            b = _view(ptrs[2, t], begin, end, neg_lr) if has_momentum else p
            if has_momentum and first_step[t] != 0:
                for i in range(end - begin):
                    _rule(p, g, b, i, gsign, weight_decay, momentum, one_minus_dampening, neg_lr, has_momentum,
                          nesterov, decay, True)
            else:
                for i in range(end - begin):
                    _rule(p, g, b, i, gsign, weight_decay, momentum, one_minus_dampening, neg_lr, has_momentum,
                          nesterov, decay, False)

    return sgd_cpu


def _make_cuda(has_momentum, nesterov, decay):
    global cuda
    cuda = _launch.cuda()
    rule = sgd_update.cuda
    view = _launch.device_view()

    def sgd_cuda(pieces, ptrs, uniform, table, first_step0, gsign, weight_decay, momentum, one_minus_dampening,
                 neg_lr):
        for k in range(cuda.blockIdx.x, pieces.shape[0], cuda.gridDim.x):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = view(ptrs[0, t], begin, end, neg_lr)
            g = view(ptrs[1, t], begin, end, neg_lr)
            b = view(ptrs[2, t], begin, end, neg_lr) if has_momentum else p
            first = first_step0
            if not uniform:
                first = table[0, t]
            if has_momentum and first != 0:
                for i in range(cuda.threadIdx.x, end - begin, cuda.blockDim.x):
                    rule(p, g, b, i, gsign, weight_decay, momentum, one_minus_dampening, neg_lr, has_momentum,
                         nesterov, decay, True)
            else:
                for i in range(cuda.threadIdx.x, end - begin, cuda.blockDim.x):
                    rule(p, g, b, i, gsign, weight_decay, momentum, one_minus_dampening, neg_lr, has_momentum,
                         nesterov, decay, False)

    return sgd_cuda


CPU = _launch.CpuDrivers(_make_cpu)
CUDA = _launch.CudaKernels(_make_cuda)
# every combination of mode flags a call can produce (the PTX check compiles each)
FLAG_SPACE = tuple(sorted({(m, m and n, d) for m, n, d in itertools.product((False, True), repeat=3)}))


def cuda_signature(dtype):
    """The argument types of the CUDA kernel for ``dtype`` arrays (for ``cuda.compile_ptx``)."""
    _, scalars = _constants(dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False), dtype)
    return _launch.kernel_signature(1, scalars, dtype)


def _constants(hparams, dtype):
    t = np.dtype(dtype).type
    has_momentum = hparams["momentum"] != 0
    flags = (has_momentum, has_momentum and bool(hparams["nesterov"]), hparams["weight_decay"] != 0)
    scalars = (t(-1 if hparams["maximize"] else 1), t(hparams["weight_decay"]), t(hparams["momentum"]),
               t(1 - hparams["dampening"]), t(-hparams["lr"]))
    return flags, scalars


def _fill(per_tensor, rows):
    first = per_tensor.get("first_step")
    rows[0][...] = 0 if first is None else np.asarray(first, dtype=bool)


def numba_step(tensors, hparams, per_tensor):
    """The ``numba`` backend of ``sgd``; ``per_tensor['first_step']`` (bool per tensor) marks empty buffers."""
    tensors.prepared(hparams, lambda: _launch.prepare_host(
        tensors, CPU, ROLES, *_constants(hparams, tensors.dtype), 1, _fill))(per_tensor)


def cuda_step(tensors, hparams, per_tensor):
    """The ``cuda`` backend of ``sgd``: one launch for the whole tensor list."""
    tensors.prepared(hparams, lambda: _launch.prepare_device(
        tensors, CUDA, ROLES, *_constants(hparams, tensors.dtype), 1, _fill))(per_tensor)

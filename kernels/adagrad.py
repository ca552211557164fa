"""Adagrad in Numba: a parallel CPU driver and a CUDA kernel around one rule
(:func:`pyopt.kernels._elementwise.adagrad_update`; maths and docs: :mod:`pyopt.reference.adagrad`).

The weight-decay mode is a constant of each compiled driver; the decayed rate ``lr / (1 + (t-1) lr_decay)`` is
computed per tensor on the host in float64 and rounded to the arrays' dtype.  Bytes per element (fp32): 20.
"""

import numpy as np

from pyopt.kernels import _launch
from pyopt.kernels._elementwise import adagrad_update
from pyopt.reference.adagrad import clr

ROLES = ("param", "grad", "sum")
_rule = adagrad_update.cpu
_view = _launch.host_view
# numba.cuda, bound by _make_cuda (a module global, which the simulator can swap for its own): the CPU driver
# never imports numba-cuda
cuda = None


def _make_cpu(loop, stamp, decay):
    def adagrad_cpu(pieces, ptrs, neg_clr, gsign, weight_decay, eps):
        _ = stamp  # part of the cache key: see _launch.SOURCE_STAMP
        for k in loop(pieces.shape[0]):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = _view(ptrs[0, t], begin, end, eps)
            g = _view(ptrs[1, t], begin, end, eps)
            s = _view(ptrs[2, t], begin, end, eps)
            rate = neg_clr[t]
            for i in range(end - begin):
                _rule(p, g, s, i, gsign, weight_decay, rate, eps, decay)

    return adagrad_cpu


def _make_cuda(decay):
    global cuda
    cuda = _launch.cuda()
    rule = adagrad_update.cuda
    view = _launch.device_view()

    def adagrad_cuda(pieces, ptrs, uniform, table, neg_clr0, gsign, weight_decay, eps):
        for k in range(cuda.blockIdx.x, pieces.shape[0], cuda.gridDim.x):
            t, begin, end = pieces[k, 0], pieces[k, 1], pieces[k, 2]
            p = view(ptrs[0, t], begin, end, eps)
            g = view(ptrs[1, t], begin, end, eps)
            s = view(ptrs[2, t], begin, end, eps)
            rate = neg_clr0
            if not uniform:
                rate = table[0, t]
            for i in range(cuda.threadIdx.x, end - begin, cuda.blockDim.x):
                rule(p, g, s, i, gsign, weight_decay, rate, eps, decay)

    return adagrad_cuda


CPU = _launch.CpuDrivers(_make_cpu)
CUDA = _launch.CudaKernels(_make_cuda)
# every combination of mode flags a call can produce (the PTX check compiles each)
FLAG_SPACE = tuple([(False,), (True,)])


def cuda_signature(dtype):
    """The argument types of the CUDA kernel for ``dtype`` arrays (for ``cuda.compile_ptx``)."""
    _, scalars = _constants(dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False), dtype)
    return _launch.kernel_signature(1, scalars, dtype)


def _constants(hparams, dtype):
    t = np.dtype(dtype).type
    flags = (hparams["weight_decay"] != 0,)
    scalars = (t(-1 if hparams["maximize"] else 1), t(hparams["weight_decay"]), t(hparams["eps"]))
    return flags, scalars


def _fill(hparams):
    lr, lr_decay = hparams["lr"], hparams["lr_decay"]
    return lambda per_tensor, rows: _launch.fill_per_step(lambda s: (-clr(lr, lr_decay, s),), per_tensor["step"],
                                                          rows)


def numba_step(tensors, hparams, per_tensor):
    """The ``numba`` backend of ``adagrad``: one parallel region for the whole tensor list."""
    tensors.prepared(hparams, lambda: _launch.prepare_host(
        tensors, CPU, ROLES, *_constants(hparams, tensors.dtype), 1, _fill(hparams)))(per_tensor)


def cuda_step(tensors, hparams, per_tensor):
    """The ``cuda`` backend of ``adagrad``: one launch for the whole tensor list."""
    tensors.prepared(hparams, lambda: _launch.prepare_device(
        tensors, CUDA, ROLES, *_constants(hparams, tensors.dtype), 1, _fill(hparams)))(per_tensor)

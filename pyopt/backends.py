"""The backend registry: (op, backend) -> kernel, and the rules that pick a backend for a call.

A kernel for an optimizer op has the signature ``kernel(tensors, hparams, per_tensor)``: ``tensors`` is an
:class:`pyopt.arrays.TensorList` (aligned lists of arrays by role, one dtype), ``hparams`` the reference
function's keyword arguments, ``per_tensor`` a dict of per-tensor arrays (``step``, ``first_step``...).

Selection (DESIGN.md section 3): an explicit ``backend=`` or ``PYOPT_BACKEND`` wins and raises if that backend
cannot run; otherwise host arrays go to ``c``, then ``numba``, then ``numpy``, device arrays to ``cuda``, and a
fallback is logged once.

The ``numba`` and ``cuda`` kernels live in :mod:`pyopt.kernels` (``kernels/`` in the source tree) and are
registered lazily: ``import pyopt`` does not import numba (about 0.7 s) or numba-cuda (about 0.8 s more); the
first call that selects one of them imports its module.
"""
import importlib
import importlib.util
import logging
import os

from pyopt import _c

log = logging.getLogger("pyopt")

HOST_PREFERENCE = ("c", "numba", "numpy")
DEVICE_BACKENDS = ("cuda",)
BACKENDS = ("c", "numba", "cuda", "numpy")
_kernels = {}
_logged_fallbacks = set()
_reasons = {}

# (op, backend) -> (module, function) of the kernels imported on first use
_LAZY = {(op, backend): (f"pyopt.kernels.{op}", f"{backend}_step")
         for op in ("adam", "sgd", "adagrad", "rmsprop") for backend in ("numba", "cuda")}
# the norms: pyopt.kernels.<family>.<backend>_forward / <backend>_backward (the numpy and c kernels register
# themselves in pyopt._norm_kernels)
_LAZY.update({(family + suffix, backend): (f"pyopt.kernels.{family}", f"{backend}_{which}")
              for family in ("layer_norm", "rms_norm", "batch_norm")
              for suffix, which in (("", "forward"), ("_backward", "backward")) for backend in ("numba", "cuda")})


def register(op, backend):
    """Decorator: ``@register("adam", "c")`` makes the function the kernel of ``op`` on ``backend``."""

    def decorate(fn):
        _kernels[(op, backend)] = fn
        return fn

    return decorate


def _numba_problem():
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba)"
    try:
        if importlib.util.find_spec("pyopt.kernels") is None:
            raise ImportError("no module named pyopt.kernels")
    except ImportError:
        return ("pyopt.kernels is missing: install pyopt (pip install .), or run from the source tree over an "
                "editable install")
    return None


def _cuda_problem():
    problem = _numba_problem()
    if problem is not None:
        return problem
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None  # the simulator runs the CUDA kernels as Python: correct, slow; simulator() says so
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed (pip install numba-cuda; numba's own CUDA target is deprecated)"
    try:
        from numba import cuda
    except Exception as exc:  # noqa: BLE001 - any import failure means the backend cannot run; say which
        return f"numba.cuda failed to import ({type(exc).__name__}: {exc})"
    if getattr(cuda, "implementation", "NVIDIA") != "NVIDIA":
        return f"numba.cuda is numba's built-in target ({cuda.implementation!r}), not numba-cuda's"
    try:
        if cuda.is_available():
            return None
        error = cuda.cuda_error() if hasattr(cuda, "cuda_error") else None
    except Exception as exc:  # noqa: BLE001
        error = exc
    detail = f" ({' '.join(str(error).split())})" if error else ""  # numba's message spans lines
    return f"no usable CUDA driver or GPU{detail}"


def _why_unavailable(backend):
    """None when ``backend`` can run on this machine, else the reason (checked once per process)."""
    if backend == "numpy":
        return None
    if backend == "c":
        return _c.IMPORT_ERROR
    if backend not in ("numba", "cuda"):
        return f"unknown backend {backend!r}"
    if backend not in _reasons:
        _reasons[backend] = _numba_problem() if backend == "numba" else _cuda_problem()
    return _reasons[backend]


def available():
    """{backend: None if it can run here, else the reason it cannot}."""
    return {name: _why_unavailable(name) for name in BACKENDS}


def simulator():
    """True when the ``cuda`` backend is the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``): correct but slow."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def ops(backend=None):
    """The ops registered (for one backend, or for any)."""
    return sorted({op for op, b in list(_kernels) + list(_LAZY) if backend in (None, b)})


def _kernel(op, backend):
    """The registered kernel, importing a lazily registered one on first use; None if there is none."""
    kernel = _kernels.get((op, backend))
    if kernel is None and (op, backend) in _LAZY:
        module, name = _LAZY[(op, backend)]
        kernel = _kernels[(op, backend)] = getattr(importlib.import_module(module), name)
    return kernel


def _has_kernel(op, backend):
    return (op, backend) in _kernels or (op, backend) in _LAZY


def select(op, backend=None, *, on_device=False):
    """(backend name, kernel) for ``op`` on host arrays, or on CUDA device arrays when ``on_device``
    (``on_device=None``: the arrays are not known yet, as when an optimizer is created; only availability is
    checked).  ``PYOPT_BACKEND`` applies to the arrays it can run on; an explicit ``backend`` must fit them."""
    requested = backend or os.environ.get("PYOPT_BACKEND") or None
    if requested is not None and on_device is not None and (requested in DEVICE_BACKENDS) != bool(on_device):
        if backend is None:
            requested = None  # the environment's choice is for the other kind of array
        elif on_device:
            raise ValueError(f"backend {requested!r} runs on host (NumPy) arrays, but these {op!r} arrays are "
                             "CUDA device arrays: use backend='cuda' or None")
        else:
            raise ValueError(f"backend {requested!r} runs on CUDA device arrays, but these {op!r} arrays are "
                             "host (NumPy) arrays")
    if requested is not None:
        why = _why_unavailable(requested)
        if why is None and not _has_kernel(op, requested):
            why = f"it has no kernel for {op!r}"
        if why is not None:
            raise ValueError(f"backend {requested!r} cannot run {op!r}: {why}")
        return requested, _kernel(op, requested)
    if on_device:
        why = _why_unavailable("cuda")
        if why is not None:
            raise ValueError(f"{op!r} got CUDA device arrays but the cuda backend cannot run: {why}")
        return "cuda", _kernel(op, "cuda")
    for name in HOST_PREFERENCE:
        if _has_kernel(op, name) and _why_unavailable(name) is None:
            if name != HOST_PREFERENCE[0] and (op, name) not in _logged_fallbacks:
                _logged_fallbacks.add((op, name))
                log.warning("pyopt: %s runs on the %s backend (c: %s)", op, name,
                            _why_unavailable("c") or "no kernel")
            return name, _kernel(op, name)
    raise ValueError(f"no backend can run {op!r}")


def instrumented_call(spec, backend, kernel, tensors, hparams, per_tensor, verify):
    """One kernel call, timed for the active ``pyopt.track`` counters and, in verify mode, shadowed by the
    float64 reference run on copies of its inputs (DESIGN.md section 1).  Only the kernel is timed."""
    from pyopt import check
    from pyopt.track import optimizer_bytes, timed, tracking  # (pyopt.track is the function in pyopt's namespace)

    copies = check.reference_inputs(tensors) if verify else None
    if tracking():
        timed(spec.op, backend, tensors, optimizer_bytes(spec, tensors, hparams, per_tensor),
              lambda: kernel(tensors, hparams, per_tensor))
    else:
        kernel(tensors, hparams, per_tensor)
    if verify:
        check.compare_with_reference(spec, backend, tensors, copies, hparams, per_tensor)


def runnable(op):
    """The host backends that can run ``op`` on this machine, in preference order (lazily registered included)."""
    return [b for b in HOST_PREFERENCE if _has_kernel(op, b) and _why_unavailable(b) is None]

"""The backend registry: (op, backend) -> kernel, and the rules that pick a backend for a call.

A kernel for an optimizer op has the signature ``kernel(tensors, hparams, per_tensor)``: ``tensors`` is an
:class:`pyopt.arrays.TensorList` (aligned lists of arrays by role, one dtype), ``hparams`` the reference
function's keyword arguments, ``per_tensor`` a dict of per-tensor arrays (``step``, ``first_step``...).

Selection (DESIGN.md section 3): an explicit ``backend=`` or ``PYOPT_BACKEND`` wins and raises if that backend
cannot run; otherwise host arrays go to ``c``, then ``numba``, then ``numpy``, and a fallback is logged once.
"""
import logging
import os

from pyopt import _c

log = logging.getLogger("pyopt")

HOST_PREFERENCE = ("c", "numba", "numpy")
_kernels = {}
_logged_fallbacks = set()


def register(op, backend):
    """Decorator: ``@register("adam", "c")`` makes the function the kernel of ``op`` on ``backend``."""

    def decorate(fn):
        _kernels[(op, backend)] = fn
        return fn

    return decorate


def _why_unavailable(backend):
    """None when ``backend`` can run on this machine, else the reason."""
    if backend == "numpy":
        return None
    if backend == "c":
        return _c.IMPORT_ERROR
    if backend in ("numba", "cuda"):
        return f"the {backend} backend is not part of this build yet"
    return f"unknown backend {backend!r}"


def available():
    """{backend: None if it can run here, else the reason it cannot}."""
    return {name: _why_unavailable(name) for name in ("c", "numba", "cuda", "numpy")}


def ops(backend=None):
    """The ops registered (for one backend, or for any)."""
    return sorted({op for op, b in _kernels if backend in (None, b)})


def select(op, backend=None):
    """(backend name, kernel) for ``op`` on host arrays."""
    requested = backend or os.environ.get("PYOPT_BACKEND") or None
    if requested is not None:
        why = _why_unavailable(requested)
        if why is None and (op, requested) not in _kernels:
            why = f"it has no kernel for {op!r}"
        if why is not None:
            raise ValueError(f"backend {requested!r} cannot run {op!r}: {why}")
        return requested, _kernels[(op, requested)]
    for name in HOST_PREFERENCE:
        if _why_unavailable(name) is None and (op, name) in _kernels:
            if name != HOST_PREFERENCE[0] and (op, name) not in _logged_fallbacks:
                _logged_fallbacks.add((op, name))
                log.warning("pyopt: %s runs on the %s backend (c: %s)", op, name,
                            _why_unavailable("c") or "no kernel")
            return name, _kernels[(op, name)]
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
    """The backends that can run ``op`` on this machine, in preference order."""
    names = list(HOST_PREFERENCE) + sorted({b for o, b in _kernels if o == op} - set(HOST_PREFERENCE))
    return [b for b in names if (op, b) in _kernels and _why_unavailable(b) is None]

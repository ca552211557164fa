"""Shared pieces of the norm tests: the backend fixture (numpy, C baseline, C AVX2, numba), input makers that fit the
domain (rows off-centre, never zeros), guard-banded outputs and finite differences."""
import numpy as np

from _backends import backend_fixture

from pyopt import _c

BACKENDS = [("numpy", None), ("c", "baseline"), ("c", "avx2"), ("numba", None)]
DTYPES = [np.float32, np.float64]


backend = backend_fixture(BACKENDS)  # a backend name, with the C ISA variant forced for the test's duration


def both_isas(run):
    """{isa: run()} for the baseline and the AVX2 copy (the AVX2 entry only where the CPU has it)."""
    previous = _c.set_isa("auto")
    try:
        out = {}
        for name in _c.isas():
            _c.set_isa(name)
            out[name] = run()
        return out
    finally:
        _c.set_isa(previous)


def off_centre(rng, shape, dtype, centre=3.0, spread=1.0):
    """``centre + spread * randn``: rows away from zero (the case naive statistics get wrong)."""
    return (centre + spread * rng.standard_normal(shape)).astype(dtype)


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def f64(*arrays):
    return tuple(None if a is None else a.astype(np.float64) for a in arrays)


def guarded(shape, dtype, pad=5):
    """(view, buffer): a C-contiguous output of ``shape`` inside a NaN-filled buffer with ``pad`` elements each side."""
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.full(n + 2 * pad, np.nan, dtype)
    return buf[pad:pad + n].reshape(shape), buf


def margins_untouched(buf, pad=5):
    return bool(np.isnan(buf[:pad]).all() and np.isnan(buf[len(buf) - pad:]).all())


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of the float64 array ``a``."""
    g = np.empty_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return g


def snapshot(*arrays):
    return [None if a is None else a.copy() for a in arrays]


def unchanged(before, arrays):
    """Every array bit-identical to its snapshot (NaNs included)."""
    return all((b is None and a is None) or (a.tobytes() == b.tobytes()) for b, a in zip(before, arrays))

"""Thread count of the CPU kernels (OpenMP for ``c``, numba's threading layer for ``numba``)."""
import sys

from pyopt import _c

_requested = None


def set_num_threads(n):
    """Threads the CPU kernels use from now on (results are bitwise the same for any count).  numba's count is
    capped at the pool it started with (``NUMBA_NUM_THREADS``), and applied when numba loads if it has not."""
    global _requested
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if _c.available():
        _c.lib.pyopt_set_num_threads(n)
    _requested = n
    if "pyopt.kernels._launch" in sys.modules:
        apply_to_numba()


def apply_to_numba():
    if _requested is not None:
        import numba

        numba.set_num_threads(min(_requested, numba.config.NUMBA_NUM_THREADS))


def get_num_threads():
    return _c.lib.pyopt_max_threads() if _c.available() else 1

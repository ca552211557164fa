"""Thread count of the C kernels (OpenMP)."""
from pyopt import _c


def set_num_threads(n):
    """Threads the C kernels use from now on (results are bitwise the same for any count)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if _c.available():
        _c.lib.pyopt_set_num_threads(n)


def get_num_threads():
    return _c.lib.pyopt_max_threads() if _c.available() else 1

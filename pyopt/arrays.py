"""Array checks and the aligned tensor lists that kernels receive.

Every check here runs before any kernel writes memory, so a call that raises leaves every array as it was
(RELIABILITY.md: validate everything before touching memory).
"""
import numpy as np

from pyopt import _c

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_array(a, name, *, writable=False):
    """A C-contiguous float32/float64 NumPy array, writable if the op writes it."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (got strides {a.strides} for shape {a.shape}); "
            "pass np.ascontiguousarray(...) and copy the result back if it is a view")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} is read-only but this op writes it in place")


def check_like(a, ref, name, ref_name):
    """``a`` has the shape and dtype of ``ref`` (never reinterpreted: a float64 buffer is not 2n floats)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {ref_name} has dtype {ref.dtype}")
    if a.shape != ref.shape:
        raise ValueError(f"{name} has shape {a.shape} but {ref_name} has shape {ref.shape}")


def overlapping_pair(arrays):
    """The first pair (i, j) of ``arrays`` (None entries ignored, indices kept) whose memory overlaps, or None."""
    indexed = [(k, a) for k, a in enumerate(arrays) if a is not None and a.size]
    if _c.available():
        pair = _c.find_overlap([a for _, a in indexed])
        return None if pair is None else (indexed[pair[0]][0], indexed[pair[1]][0])
    # without the C extension: the same sweep over ranges sorted by address
    bounds = sorted((a.__array_interface__["data"][0], a.nbytes, k) for k, a in indexed)
    reach_end, reach_k = None, None
    for start, size, k in bounds:
        if reach_end is not None and start < reach_end:
            return min(reach_k, k), max(reach_k, k)
        if reach_end is None or start + size > reach_end:
            reach_end, reach_k = start + size, k
    return None


class TensorList:
    """Aligned lists of arrays for one kernel call, by role (``param``, ``grad``, ``exp_avg``...), one dtype.

    Pointer tables for the C backend are built on first use and kept until a role's arrays are replaced, so a
    training loop that reuses its arrays pays for them once.
    """

    def __init__(self, roles):
        self.roles = {role: list(arrays) for role, arrays in roles.items()}
        params = self.roles["param"]
        self.n = len(params)
        self.dtype = params[0].dtype if params else np.dtype(np.float32)
        self.numel = np.fromiter((p.size for p in params), dtype=np.int64, count=self.n)
        self.total = int(self.numel.sum())
        self._tables = {}
        self._prepared_for = self._prepared = None

    def prepared(self, hparams, build):
        """What a kernel derived from ``hparams`` (a cffi struct, a function pointer...), rebuilt only when it is
        handed a different hparams object: optimizers pass the same dict while the hyper-parameters stay put."""
        if self._prepared_for is not hparams:
            self._prepared = build()
            self._prepared_for = hparams
        return self._prepared

    def __getitem__(self, role):
        return self.roles[role]

    def replace(self, role, arrays):
        self.roles[role] = list(arrays)
        self._tables.pop(role, None)

    def table(self, role):
        """``void *[]`` of the role's data pointers (NULL for a missing role or entry)."""
        table = self._tables.get(role)
        if table is None:
            table = _c.pointer_table(self.roles.get(role) or [None] * self.n)
            self._tables[role] = table
        return table

    def numel_table(self):
        table = self._tables.get(None)
        if table is None:
            table = self._tables[None] = _c.int64s(self.numel)
        return table

"""The tolerance table the tests use is pyopt.check.TOLERANCES (one table: verify mode and ``pyopt check`` apply
it at run time too); these names are the tests' views of it."""
from pyopt.check import NORM_OFF_CENTRE_ATOL, TOLERANCES  # noqa: F401 (NORM_OFF_CENTRE_ATOL: for the norm tests)

OPTIMIZER = TOLERANCES["optimizer"]
REFERENCE_VS_TORCH = TOLERANCES["reference_vs_torch"]


def tolerance(table, dtype):
    import numpy as np

    return table[np.dtype(dtype)]


# norms: pyopt.check.TOLERANCES["norm_*"] (reasons there); NORM_OFF_CENTRE_ATOL, the accuracy claims on rows far
# from zero, comes from pyopt.check too
NORM_FORWARD = TOLERANCES["norm_forward"]
NORM_BACKWARD = TOLERANCES["norm_backward"]
NORM_VS_TORCH = TOLERANCES["norm_vs_torch"]

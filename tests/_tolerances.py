"""The tolerance table the tests use is pyopt.check.TOLERANCES (one table: verify mode and ``pyopt check`` apply
it at run time too); these names are the tests' views of it."""
from pyopt.check import TOLERANCES

OPTIMIZER = TOLERANCES["optimizer"]
REFERENCE_VS_TORCH = TOLERANCES["reference_vs_torch"]


def tolerance(table, dtype):
    import numpy as np

    return table[np.dtype(dtype)]

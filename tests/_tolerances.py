"""The one tolerance table of the test suite: (rtol, atol) by dtype and kind of comparison.

Anchors are PyTorch's defaults for torch.testing.assert_close.  Every entry looser than its anchor says why.
"""
import numpy as np

# an optimizer step in the array's dtype against the float64 reference (re-synced every step)
OPTIMIZER = {
    np.dtype(np.float64): (1e-7, 1e-7),
    np.dtype(np.float32): (1.3e-6, 1e-5),
}

# our float64 reference against torch.optim in float64: the same formulas, but ATen's vectorized add/lerp use
# FMA, so the last bit differs (one rounding per fused op, a few ops per step)
REFERENCE_VS_TORCH = {
    np.dtype(np.float64): (1e-12, 1e-14),
    np.dtype(np.float32): (1.3e-6, 1e-6),
}


def tolerance(table, dtype):
    return table[np.dtype(dtype)]

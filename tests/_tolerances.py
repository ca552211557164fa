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

# ---- norms (LayerNorm, RMSNorm, BatchNorm) against the float64 reference on the same (rounded) inputs ----
# forward outputs y, mean, rstd
NORM_FORWARD = {
    np.dtype(np.float64): (1e-7, 1e-7),
    np.dtype(np.float32): (1.3e-6, 1e-5),
    np.dtype(np.float16): (1e-3, 1e-5),
}
# backward dx, dweight, dbias; float32 atol loosened to RELIABILITY.md's "about 1e-4 backward": dx is a small
# difference of terms of the size of dy * weight (its row/channel mean is subtracted), so its float32 rounding is
# absolute in the scale of dy * weight, not relative to dx; dweight/dbias are sums over up to 10^5 rows whose
# rounding grows with the magnitude of the sum
NORM_BACKWARD = {
    np.dtype(np.float64): (1e-7, 1e-7),
    np.dtype(np.float32): (1e-5, 1e-4),
    np.dtype(np.float16): (1e-3, 1e-3),  # atol: dy * weight is ~1 and float16's half-ulp there is 4.9e-4
}
# the float64 reference against torch.nn.functional / torch.native_* in float64: ATen sums with Welford / cascade
# sums and FMA, so results agree to the last few bits of sums over thousands of terms, not bitwise
NORM_VS_TORCH = {
    np.dtype(np.float64): (1e-10, 1e-12),
}
# the accuracy claims for float32 rows far from zero (issue "Fused normalization kernels", RELIABILITY.md row 24):
# max |y_float32 - y_float64| with weight 1 and bias 0, by the kind of row
NORM_OFF_CENTRE_ATOL = {
    "1e3 + randn": 1e-4,         # PyTorch float32: up to 3e-4
    "1e4 + 1e-2 randn": 2e-3,    # PyTorch float32: 3.7e-2
}

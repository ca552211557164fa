"""The norm ops in pyopt's run-time machinery: pyopt.track counts them with their declared bytes, and verify
mode (PYOPT_VERIFY=1) shadows every call with the float64 reference and catches a wrong kernel."""
import numpy as np
import pytest
from _norm_helpers import off_centre, randn

import pyopt
from pyopt import backends, check
from pyopt import functional as F
from pyopt.reference.batch_norm import bytes_moved as bn_bytes
from pyopt.reference.layer_norm import bytes_moved as ln_bytes


def all_ops(rng, dtype=np.float32):
    """Runs each of the six norm ops once on the C backend."""
    x, w, b = off_centre(rng, (6, 40), dtype), off_centre(rng, (40,), dtype, 1.0, 0.5), randn(rng, (40,), dtype)
    dy = randn(rng, x.shape, dtype)
    _, mean, rstd = F.layer_norm(x, (40,), w, b, backend="c")
    F.layer_norm_backward(dy, x, w, mean, rstd, (40,), backend="c")
    _, r = F.rms_norm(x, (40,), w, backend="c")
    F.rms_norm_backward(dy, x, w, r, (40,), backend="c")
    xb = off_centre(rng, (4, 3, 5, 5), dtype)
    sd = np.float32 if dtype == np.float16 else dtype
    rm, rv = np.zeros(3, sd), np.ones(3, sd)
    _, sm, sr = F.batch_norm(xb, None, None, rm, rv, training=True, backend="c")
    F.batch_norm_backward(randn(rng, xb.shape, dtype), xb, None, sm, sr, backend="c")


def test_track_counts_norm_calls_with_their_declared_bytes(rng):
    with pyopt.track(probe=False) as t:
        all_ops(rng)
    counts = t.as_dict()
    for op in ("layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward", "batch_norm",
               "batch_norm_backward"):
        assert counts[(op, "c", "float32")]["calls"] == 1, op
    assert counts[("layer_norm", "c", "float32")]["bytes"] == ln_bytes(6, 40, 4)
    assert counts[("batch_norm", "c", "float32")]["bytes"] == bn_bytes(300, 3, 4, weight=False, bias=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_verify_mode_passes_on_the_c_kernels(dtype, monkeypatch, rng):
    monkeypatch.setenv("PYOPT_VERIFY", "1")
    all_ops(rng, dtype)


def test_verify_mode_catches_a_wrong_kernel(monkeypatch, rng):
    monkeypatch.setenv("PYOPT_VERIFY", "1")
    good = backends.select("batch_norm_backward", "c")[1]

    def off_by_a_bit(**kw):
        good(**kw)
        kw["dweight"][1] *= 1.001

    monkeypatch.setitem(backends._kernels, ("batch_norm_backward", "c"), off_by_a_bit)
    with pytest.raises(check.VerifyError, match=r"batch_norm_backward on backend 'c' \(float32\): dweight differs"):
        all_ops(rng)

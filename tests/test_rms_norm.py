"""RMSNorm: every backend against the float64 reference, parity with torch.nn.functional.rms_norm in float64,
finite differences, determinism, guard bands and bad inputs."""
import numpy as np
import pytest
from _compare import assert_bitwise, assert_close
from _norm_helpers import (DTYPES, backend, both_isas, f64, guarded, margins_untouched, numeric_grad,  # noqa: F401
                           off_centre, randn, snapshot, unchanged)
from _tolerances import NORM_BACKWARD, NORM_FORWARD, NORM_VS_TORCH, tolerance

import pyopt
from pyopt import functional as F
from pyopt import reference as R

SHAPES = [((0, 7), (7,)), ((1, 1), (1,)), ((5, 1), (1,)), ((7, 1023), (1023,)), ((13, 17), (17,)),
          ((2, 3, 31), (3, 31)), ((4, 5, 24), (24,)), ((3, 20011), (20011,))]


def make(rng, shape, nshape, dtype, has_weight=True, centre=1e3):
    x = off_centre(rng, shape, dtype, centre=centre)
    w = off_centre(rng, nshape, dtype, centre=1.0, spread=0.5) if has_weight else None
    return x, w


@pytest.mark.parametrize("eps", [None, 1e-6])
@pytest.mark.parametrize("has_weight", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,nshape", SHAPES, ids=str)
def test_forward_and_backward_match_float64_reference(shape, nshape, dtype, has_weight, eps, backend, rng):
    x, w = make(rng, shape, nshape, dtype, has_weight, centre=3.0)
    dy = randn(rng, shape, dtype)
    y, rstd = F.rms_norm(x, nshape, w, eps=eps, backend=backend)
    ref_eps = float(np.finfo(dtype).eps) if eps is None else eps
    y64, rstd64 = R.rms_norm(*f64(x), nshape, *f64(w), eps=ref_eps)
    assert y.dtype == rstd.dtype == dtype and rstd.shape == shape[:len(shape) - len(nshape)]
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    assert_close(y, y64, rtol, atol, "y")
    assert_close(rstd, rstd64, rtol, atol, "rstd")
    dx, dw = F.rms_norm_backward(dy, x, w, rstd, nshape, backend=backend)
    dx64, dw64 = R.rms_norm_backward(*f64(dy, x, w), rstd64, nshape)
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(dx, dx64, rtol, atol, "dx")
    assert_close(dw, dw64, rtol, atol, "dweight")


@pytest.mark.parametrize("has_weight", [True, False])
def test_reference_matches_torch_in_float64(has_weight, rng):
    torch = pytest.importorskip("torch")
    x, w = make(rng, (6, 2, 129), (2, 129), np.float64, has_weight, centre=0.5)
    dy = randn(rng, x.shape, np.float64)
    y, rstd = R.rms_norm(x, (2, 129), w, eps=1e-6)
    xt = torch.from_numpy(x).requires_grad_()
    wt = None if w is None else torch.from_numpy(w).requires_grad_()
    yt = torch.nn.functional.rms_norm(xt, (2, 129), wt, eps=1e-6)
    rtol, atol = tolerance(NORM_VS_TORCH, np.float64)
    assert_close(y, yt.detach().numpy(), rtol, atol, "y")
    yt.backward(torch.from_numpy(dy))
    dx, dw = R.rms_norm_backward(dy, x, w, rstd, (2, 129))
    assert_close(dx, xt.grad.numpy(), rtol, atol, "dx")
    if w is not None:
        assert_close(dw, wt.grad.numpy(), rtol, atol, "dweight")


def test_default_eps_is_torchs(rng):
    torch = pytest.importorskip("torch")
    x = randn(rng, (3, 8), np.float32, scale=1e-4)  # small rows, where eps matters
    y, _ = F.rms_norm(x, (8,))
    assert_close(y, torch.nn.functional.rms_norm(torch.from_numpy(x), (8,)).numpy(),
                 *tolerance(NORM_FORWARD, np.float32), "y")


@pytest.mark.parametrize("has_weight", [True, False])
def test_backward_agrees_with_finite_differences(has_weight, backend, rng):
    x, w = make(rng, (3, 6), (6,), np.float64, has_weight, centre=0.3)
    r = randn(rng, (3, 6), np.float64)

    def loss():
        return float((R.rms_norm(x, (6,), w, eps=1e-6)[0] * r).sum())

    _, rstd = F.rms_norm(x, (6,), w, eps=1e-6, backend=backend)
    dx, dw = F.rms_norm_backward(r, x, w, rstd, (6,), backend=backend)
    assert_close(dx, numeric_grad(loss, x), 1e-6, 1e-7, "dx vs finite differences")
    if has_weight:
        assert_close(dw, numeric_grad(loss, w), 1e-6, 1e-7, "dweight vs finite differences")


def test_scale_invariance(backend, rng):
    x = randn(rng, (5, 77), np.float64)
    y, _ = F.rms_norm(x, (77,), eps=0.0, backend=backend)
    y2, _ = F.rms_norm(x * 0.37, (77,), eps=0.0, backend=backend)
    assert_close(y2, y, *tolerance(NORM_FORWARD, np.float64), "RMS(0.37 x)")
    ms = (y.astype(np.float64) ** 2).mean(axis=1)
    assert_close(ms, np.ones(5), 1e-12, 1e-12, "mean square of each row")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_1_and_2_threads(dtype, rng):
    x, w = make(rng, (300, 1023), (1023,), dtype)
    dy = randn(rng, x.shape, dtype)
    results = []
    previous = pyopt.get_num_threads()
    try:
        for threads in (1, 2, 1):
            pyopt.set_num_threads(threads)
            y, rstd = F.rms_norm(x, (1023,), w, backend="c")
            results.append((y, rstd) + F.rms_norm_backward(dy, x, w, rstd, (1023,), backend="c"))
    finally:
        pyopt.set_num_threads(previous)
    for other in results[1:]:
        for name, a, e in zip(("y", "rstd", "dx", "dweight"), other, results[0]):
            assert_bitwise(a, e, name)


def test_outputs_inside_guard_bands_and_float16(backend, rng):
    for dtype in (np.float32, np.float16):
        x, w = make(rng, (7, 33), (33,), dtype, centre=3.0)
        dy = randn(rng, x.shape, dtype)
        inputs = snapshot(x, w, dy)
        sd = np.float32 if dtype == np.float16 else dtype
        (y, ybuf), (r, rbuf) = guarded(x.shape, dtype), guarded((7,), sd)
        F.rms_norm(x, (33,), w, out=y, rstd=r, backend=backend)
        (dx, dxbuf), (dw, dwbuf) = guarded(x.shape, dtype), guarded((33,), dtype)
        F.rms_norm_backward(dy, x, w, r, (33,), out=dx, dweight=dw, backend=backend)
        assert all(margins_untouched(b) for b in (ybuf, rbuf, dxbuf, dwbuf))
        assert unchanged(inputs, [x, w, dy])
        y64, r64 = R.rms_norm(*f64(x), (33,), *f64(w), eps=float(np.finfo(dtype).eps))
        assert_close(y, y64, *tolerance(NORM_FORWARD, dtype), "y")
        dx64, dw64 = R.rms_norm_backward(*f64(dy, x, w), r64, (33,))
        rtol, atol = tolerance(NORM_BACKWARD, dtype)
        assert_close(dx, dx64, rtol, atol, "dx")
        assert_close(dw, dw64, rtol, 10 * atol, "dweight")  # float16: sums of 7 rounded products


def test_bad_inputs_raise_before_any_write(rng):
    x, w = make(rng, (4, 6), (6,), np.float32)
    dy = randn(rng, (4, 6), np.float32)
    out, rstd = np.full((4, 6), 7.0, np.float32), np.full(4, 7.0, np.float32)
    cases = [
        (dict(normalized_shape=(5,)), ValueError, "not a suffix"),
        (dict(weight=w[:5]), ValueError, "weight has shape"),
        (dict(weight=w.astype(np.float64)), TypeError, "weight has dtype"),
        (dict(eps=-1.0), ValueError, "Invalid eps"),
        (dict(out=x), ValueError, "out overlaps x"),
        (dict(rstd=np.empty(5, np.float32)), ValueError, "rstd has shape"),
    ]
    for kwargs, exc, message in cases:
        args = dict(x=x, normalized_shape=(6,), weight=w, out=out, rstd=rstd)
        args.update(kwargs)
        before = snapshot(x, w, out, rstd)
        with pytest.raises(exc, match=message):
            F.rms_norm(**args)
        assert unchanged(before, [x, w, out, rstd]), kwargs
    _, r = F.rms_norm(x, (6,), w)
    dx, dw = np.full((4, 6), 7.0, np.float32), np.full(6, 7.0, np.float32)
    for kwargs, exc, message in [(dict(rstd=r[:2]), ValueError, "rstd has shape"),
                                 (dict(dy=dy.T), ValueError, "dy has shape"),
                                 (dict(out=x), ValueError, "out overlaps x"),
                                 (dict(rstd=None), TypeError, "needs the rstd")]:
        args = dict(dy=dy, x=x, weight=w, rstd=r, normalized_shape=(6,), out=dx, dweight=dw)
        args.update(kwargs)
        before = snapshot(dy, x, w, r, dx, dw)
        with pytest.raises(exc, match=message):
            F.rms_norm_backward(**args)
        assert unchanged(before, [dy, x, w, r, dx, dw]), kwargs


def test_bytes_moved_counts_the_minimum_traffic():
    from pyopt.reference.rms_norm import bytes_moved
    M, N = 2048, 4096
    assert bytes_moved(M, N, 4) == 4 * (2 * M * N + N + M)
    assert bytes_moved(M, N, 4, which="backward") == 4 * (3 * M * N + 2 * N + M)
    assert bytes_moved(M, N, 8, which="both", weight=False) == 8 * (5 * M * N + N + 2 * M)


@pytest.mark.parametrize("dtype", DTYPES)
def test_both_isa_variants_give_the_same_bits(dtype, rng):
    if "avx2" not in pyopt._c.isas():
        pytest.skip(reason="no AVX2 on this CPU")
    x, w = make(rng, (9, 515), (515,), dtype)
    dy = randn(rng, x.shape, dtype)

    def run():
        y, rstd = F.rms_norm(x, (515,), w, backend="c")
        return (y, rstd) + F.rms_norm_backward(dy, x, w, rstd, (515,), backend="c")

    results = both_isas(run)
    for name, a, e in zip(("y", "rstd", "dx", "dw"), results["avx2"], results["baseline"]):
        assert_bitwise(a, e, name)

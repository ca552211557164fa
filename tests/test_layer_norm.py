"""LayerNorm: every backend against the float64 reference, the accuracy claims on rows far from zero (and
PyTorch's float32 result on the same rows), parity with torch in float64, the invariants of RELIABILITY.md
(8, 9, 11), determinism, guard bands and bad inputs."""
import numpy as np
import pytest
from _compare import assert_bitwise, assert_close
from _norm_helpers import (DTYPES, backend, both_isas, f64, guarded, margins_untouched, numeric_grad,  # noqa: F401
                           off_centre, randn, snapshot, unchanged)
from _tolerances import NORM_BACKWARD, NORM_FORWARD, NORM_OFF_CENTRE_ATOL, NORM_VS_TORCH, tolerance

import pyopt
from pyopt import functional as F
from pyopt import reference as R

# (shape of x, normalized_shape): no rows, one row, D = 1, primes, non-multiples of 8/16, 1023, a 2-D suffix
SHAPES = [((0, 7), (7,)), ((1, 1), (1,)), ((1, 7), (7,)), ((5, 1), (1,)), ((7, 1023), (1023,)),
          ((13, 17), (17,)), ((3, 16), (16,)), ((2, 3, 31), (3, 31)), ((4, 5, 24), (24,)), ((3, 20011), (20011,))]
AFFINE = [(True, True), (True, False), (False, True), (False, False)]


def make(rng, shape, nshape, dtype, affine=(True, True), centre=3.0):
    x = off_centre(rng, shape, dtype, centre=centre)
    w = off_centre(rng, nshape, dtype, centre=1.0, spread=0.5) if affine[0] else None
    b = randn(rng, nshape, dtype) if affine[1] else None
    return x, w, b


@pytest.mark.parametrize("affine", AFFINE, ids=lambda a: f"w{int(a[0])}b{int(a[1])}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,nshape", SHAPES, ids=str)
def test_forward_matches_float64_reference(shape, nshape, dtype, affine, backend, rng):
    x, w, b = make(rng, shape, nshape, dtype, affine)
    y, mean, rstd = F.layer_norm(x, nshape, w, b, eps=1e-5, backend=backend)
    y64, mean64, rstd64 = R.layer_norm(*f64(x), nshape, *f64(w, b), eps=1e-5)
    assert y.dtype == mean.dtype == rstd.dtype == dtype
    assert mean.shape == rstd.shape == shape[:len(shape) - len(nshape)]
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    assert_close(y, y64, rtol, atol, "y")
    assert_close(mean, mean64, rtol, atol, "mean")
    assert_close(rstd, rstd64, rtol, atol, "rstd")


@pytest.mark.parametrize("has_weight", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,nshape", SHAPES, ids=str)
def test_backward_matches_float64_reference(shape, nshape, dtype, has_weight, backend, rng):
    x, w, _ = make(rng, shape, nshape, dtype, (has_weight, False))
    dy = randn(rng, shape, dtype)
    _, mean, rstd = F.layer_norm(x, nshape, w, backend=backend)
    dx, dw, db = F.layer_norm_backward(dy, x, w, mean, rstd, nshape, backend=backend)
    _, mean64, rstd64 = R.layer_norm(*f64(x), nshape, *f64(w))
    dx64, dw64, db64 = R.layer_norm_backward(*f64(dy, x, w), mean64, rstd64, nshape)
    assert dx.dtype == dw.dtype == db.dtype == dtype and dw.shape == db.shape == nshape
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(dx, dx64, rtol, atol, "dx")
    assert_close(dw, dw64, rtol, atol, "dweight")
    assert_close(db, db64, rtol, atol, "dbias")


@pytest.mark.parametrize("kind", list(NORM_OFF_CENTRE_ATOL))
@pytest.mark.parametrize("rows,cols", [(64, 768), (16, 4096), (256, 128), (3, 65536)])
@pytest.mark.parametrize("backend_isa", ["numpy", "c-baseline", "c-avx2"])
def test_float32_rows_far_from_zero_are_accurate_and_beat_torch(kind, rows, cols, backend_isa, rng):
    """RELIABILITY.md row 24: float32 output within the claim of the float64 answer; torch's float32 layer_norm
    on the same rows is at least 10x further off (and, for 1e4 + 1e-2 randn, outside the claim)."""
    name, _, isa_name = backend_isa.partition("-")
    if isa_name and isa_name not in pyopt._c.isas():
        pytest.skip(reason=f"no {isa_name} on this CPU")
    centre, spread = (1e3, 1.0) if kind == "1e3 + randn" else (1e4, 1e-2)
    x = off_centre(rng, (rows, cols), np.float32, centre=centre, spread=spread)
    previous = pyopt.set_isa(isa_name or "auto")
    try:
        y, _, _ = F.layer_norm(x, (cols,), backend=name)
    finally:
        pyopt.set_isa(previous)
    y64, _, _ = R.layer_norm(x.astype(np.float64), (cols,))
    ours = float(np.abs(y - y64).max())
    assert ours <= NORM_OFF_CENTRE_ATOL[kind], f"max error {ours:.2e} > claim {NORM_OFF_CENTRE_ATOL[kind]:.0e}"
    torch = pytest.importorskip("torch")
    theirs = float(np.abs(torch.nn.functional.layer_norm(torch.from_numpy(x), (cols,)).numpy() - y64).max())
    assert theirs > 10 * ours, f"torch float32 {theirs:.2e} vs pyopt {ours:.2e}"
    if kind == "1e4 + 1e-2 randn":
        assert theirs > NORM_OFF_CENTRE_ATOL[kind]


@pytest.mark.parametrize("kind", list(NORM_OFF_CENTRE_ATOL))
@pytest.mark.parametrize("head_offset", [0.0, 1.8, 5.0, 300.0])
@pytest.mark.parametrize("cols", [9, 128, 1031, 65536])
def test_float32_statistics_survive_a_far_first_stretch(kind, head_offset, cols, backend, rng):
    """The float32 statistics sum once around the mean of a row's first 16 values and again around the mean when
    that shift was more than sqrt(3) standard deviations off (csrc/norm_lanes.h norm_mean_var): rows whose head
    sits head_offset deviations above the body keep the claim on both sides of that threshold (at 65536 columns
    and 300 deviations, one pass around the head would miss it: 4e-4 and 3e-3)."""
    centre, spread = (1e3, 1.0) if kind == "1e3 + randn" else (1e4, 1e-2)
    x = off_centre(rng, (2 if cols > 4096 else 12, cols), np.float32, centre=centre, spread=spread)
    x[:, :16] += np.float32(head_offset * spread)
    y, _, rstd = F.layer_norm(x, (cols,), backend=backend)
    y64, _, rstd64 = R.layer_norm(x.astype(np.float64), (cols,))
    assert np.abs(y - y64).max() <= NORM_OFF_CENTRE_ATOL[kind]
    assert_close(rstd, rstd64, 1e-5, 0.0, "rstd")


@pytest.mark.parametrize("affine", AFFINE[:2] + AFFINE[3:], ids=lambda a: f"w{int(a[0])}b{int(a[1])}")
@pytest.mark.parametrize("shape,nshape", [((6, 1023), (1023,)), ((2, 3, 4, 5), (4, 5)), ((4, 1), (1,))], ids=str)
def test_reference_matches_torch_in_float64(shape, nshape, affine, rng):
    torch = pytest.importorskip("torch")
    x, w, b = make(rng, shape, nshape, np.float64, affine)
    dy = randn(rng, shape, np.float64)
    y, mean, rstd = R.layer_norm(x, nshape, w, b, eps=1e-5)
    t = lambda a: None if a is None else torch.from_numpy(a).requires_grad_()  # noqa: E731
    xt, wt, bt = t(x), t(w), t(b)
    yt, mt, rt = torch.native_layer_norm(xt, nshape, wt, bt, 1e-5)
    rtol, atol = tolerance(NORM_VS_TORCH, np.float64)
    assert_close(y, yt.detach().numpy(), rtol, atol, "y")
    assert_close(mean, mt.detach().numpy().reshape(mean.shape), rtol, atol, "mean")
    assert_close(rstd, rt.detach().numpy().reshape(rstd.shape), rtol, atol, "rstd")
    yt.backward(torch.from_numpy(dy))
    dx, dw, db = R.layer_norm_backward(dy, x, w, mean, rstd, nshape)
    assert_close(dx, xt.grad.numpy(), rtol, atol, "dx")
    if w is not None:
        assert_close(dw, wt.grad.numpy(), rtol, atol, "dweight")
    if b is not None:
        assert_close(db, bt.grad.numpy(), rtol, atol, "dbias")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_have_mean_zero_and_variance_one(dtype, backend, rng):
    x = off_centre(rng, (9, 257), dtype, centre=1e3)
    y, _, _ = F.layer_norm(x, (257,), eps=0.0, backend=backend)
    y64 = y.astype(np.float64)
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    assert_close(y64.mean(axis=1), np.zeros(9), 0, 10 * atol, "row means")
    assert_close(y64.var(axis=1), np.ones(9), 10 * rtol, 10 * atol, "row variances")


@pytest.mark.parametrize("dtype", DTYPES)
def test_shift_and_scale_invariance(dtype, backend, rng):
    """LN(x + 1e4) == LN(x) and LN(a x) == LN(x) for a > 0, to the accuracy claims (eps = 0: eps breaks scale
    invariance by design)."""
    x = randn(rng, (11, 300), dtype)
    y, _, _ = F.layer_norm(x, (300,), eps=0.0, backend=backend)
    shifted, _, _ = F.layer_norm((x.astype(np.float64) + 1e4).astype(dtype), (300,), eps=0.0, backend=backend)
    scaled, _, _ = F.layer_norm(x * dtype(8.0), (300,), eps=0.0, backend=backend)  # a power of 2: exact
    scaled_odd, _, _ = F.layer_norm(x * dtype(0.37), (300,), eps=0.0, backend=backend)
    # x + 1e4 rounds x to float32's spacing at 1e4 (~1e-3): compare with the LN of the rounded input's exact answer
    y_shift64, _, _ = R.layer_norm((x.astype(np.float64) + 1e4).astype(dtype).astype(np.float64), (300,), eps=0.0)
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    assert_close(shifted, y_shift64, rtol, atol, "LN(x + 1e4)")
    if dtype == np.float64:
        assert_close(shifted, y, rtol, atol, "LN(x + 1e4) vs LN(x)")
    assert_bitwise(scaled, y, "LN(8 x)")
    assert_close(scaled_odd, y, rtol, atol, "LN(0.37 x)")


@pytest.mark.parametrize("has_weight", [True, False])
@pytest.mark.parametrize("nshape", [(5,), (2, 3)], ids=str)
def test_backward_agrees_with_finite_differences(nshape, has_weight, backend, rng):
    shape = (3,) + nshape
    x, w, b = make(rng, shape, nshape, np.float64, (has_weight, True))
    r = randn(rng, shape, np.float64)  # the loss is sum(r * y): dL/dy = r

    def loss():
        return float((R.layer_norm(x, nshape, w, b)[0] * r).sum())

    _, mean, rstd = F.layer_norm(x, nshape, w, b, backend=backend)
    dx, dw, db = F.layer_norm_backward(r, x, w, mean, rstd, nshape, backend=backend)
    assert_close(dx, numeric_grad(loss, x), 1e-6, 1e-7, "dx vs finite differences")
    if has_weight:
        assert_close(dw, numeric_grad(loss, w), 1e-6, 1e-7, "dweight vs finite differences")
    assert_close(db, numeric_grad(loss, b), 1e-6, 1e-7, "dbias vs finite differences")


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_identities(dtype, backend, rng):
    """dbias == sum(dy) over rows; dx sums to zero along each row (any weight)."""
    x, w, _ = make(rng, (37, 129), (129,), dtype, centre=1e3)
    dy = randn(rng, (37, 129), dtype)
    _, mean, rstd = F.layer_norm(x, (129,), w, backend=backend)
    dx, _, db = F.layer_norm_backward(dy, x, w, mean, rstd, (129,), backend=backend)
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(db, dy.astype(np.float64).sum(axis=0), rtol, atol, "dbias vs sum(dy)")
    scale = np.abs(dy.astype(np.float64) * w).sum(axis=1)  # the size of the terms that cancel
    assert_close(dx.astype(np.float64).sum(axis=1) / scale, np.zeros(37), 0, 10 * atol, "row sums of dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(300, 1023), (70, 8), (5, 40000)], ids=str)
def test_bitwise_identical_for_1_and_2_threads_and_run_after_run(shape, dtype, rng):
    x, w, b = make(rng, shape, shape[1:], dtype)
    dy = randn(rng, shape, dtype)
    results = []
    previous = pyopt.get_num_threads()
    try:
        for threads in (1, 2, 2, 1):
            pyopt.set_num_threads(threads)
            y, mean, rstd = F.layer_norm(x, shape[1:], w, b, backend="c")
            results.append((y, mean, rstd) + F.layer_norm_backward(dy, x, w, mean, rstd, shape[1:], backend="c"))
    finally:
        pyopt.set_num_threads(previous)
    for other in results[1:]:
        for name, a, e in zip(("y", "mean", "rstd", "dx", "dweight", "dbias"), other, results[0]):
            assert_bitwise(a, e, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_inside_guard_bands(dtype, backend, rng):
    shape, nshape = (7, 33), (33,)
    x, w, b = make(rng, shape, nshape, dtype)
    dy = randn(rng, shape, dtype)
    inputs = snapshot(x, w, b, dy)
    (y, ybuf), (m, mbuf), (r, rbuf) = guarded(shape, dtype), guarded((7,), dtype), guarded((7,), dtype)
    F.layer_norm(x, nshape, w, b, out=y, mean=m, rstd=r, backend=backend)
    (dx, dxbuf), (dw, dwbuf), (db, dbbuf) = guarded(shape, dtype), guarded(nshape, dtype), guarded(nshape, dtype)
    F.layer_norm_backward(dy, x, w, m, r, nshape, out=dx, dweight=dw, dbias=db, backend=backend)
    for buf in (ybuf, mbuf, rbuf, dxbuf, dwbuf, dbbuf):
        assert margins_untouched(buf)
    assert unchanged(inputs, [x, w, b, dy])
    fresh = F.layer_norm(x, nshape, w, b, backend=backend)
    for name, a, e in zip(("y", "mean", "rstd"), (y, m, r), fresh):
        assert_bitwise(a, e, name)
    for name, a, e in zip(("dx", "dw", "db"), (dx, dw, db), F.layer_norm_backward(dy, x, w, m, r, nshape,
                                                                                    backend=backend)):
        assert_bitwise(a, e, name)


def test_non_contiguous_inputs_give_the_contiguous_result(backend, rng):
    big = off_centre(rng, (8, 2, 45), np.float32)
    x = big[:, 1, 3:40]                        # strided rows
    w = off_centre(rng, (74,), np.float32)[::2]  # a strided weight
    dy = randn(rng, (37, 8), np.float32).T     # a transposed gradient
    y, mean, rstd = F.layer_norm(x, (37,), w, backend=backend)
    yc, mc, rc = F.layer_norm(np.ascontiguousarray(x), (37,), np.ascontiguousarray(w), backend=backend)
    assert_bitwise(y, yc, "y")
    dx, dw, db = F.layer_norm_backward(dy, x, w, mean, rstd, (37,), backend=backend)
    dxc, dwc, dbc = F.layer_norm_backward(np.ascontiguousarray(dy), np.ascontiguousarray(x),
                                          np.ascontiguousarray(w), mc, rc, (37,), backend=backend)
    for name, a, e in (("dx", dx, dxc), ("dw", dw, dwc), ("db", db, dbc)):
        assert_bitwise(a, e, name)


@pytest.mark.parametrize("centre", [3.0, 3e4])
def test_float16_input_uses_float32_statistics(centre, backend, rng):
    """RELIABILITY.md row 25: no overflow (x^2 of 3e4 is past float16's range), float32 statistics."""
    x = off_centre(rng, (6, 100), np.float16, centre=centre, spread=centre / 10)
    w, b = off_centre(rng, (100,), np.float16, centre=1.0, spread=0.3), randn(rng, (100,), np.float16)
    y, mean, rstd = F.layer_norm(x, (100,), w, b, backend=backend)
    assert y.dtype == np.float16 and mean.dtype == rstd.dtype == np.float32
    y64, mean64, rstd64 = R.layer_norm(*f64(x), (100,), *f64(w, b))
    assert np.isfinite(y).all()
    assert_close(y, y64, *tolerance(NORM_FORWARD, np.float16), "y")
    assert_close(mean, mean64, *tolerance(NORM_FORWARD, np.float32), "mean")
    assert_close(rstd, rstd64, *tolerance(NORM_FORWARD, np.float32), "rstd")
    dy = randn(rng, (6, 100), np.float16)
    dx, dw, db = F.layer_norm_backward(dy, x, w, mean, rstd, (100,), backend=backend)
    dx64, dw64, db64 = R.layer_norm_backward(*f64(dy, x, w), mean64, rstd64, (100,))
    rtol, atol = tolerance(NORM_BACKWARD, np.float16)
    assert_close(dx, dx64 , rtol, atol, "dx")
    assert_close(dw, dw64, rtol, atol * 10, "dweight")  # sums of 6 rows of float16 products
    assert_close(db, db64, rtol, atol * 10, "dbias")


def test_constant_row_with_eps_zero_gives_nan_without_crashing(backend):
    """RELIABILITY.md row 26: var = 0 and eps = 0 give rstd = inf and y = 0 * inf = NaN, as IEEE says."""
    x = np.full((2, 8), 5.0, np.float32)
    y, mean, rstd = F.layer_norm(x, (8,), eps=0.0, backend=backend)
    assert np.isnan(y).all() and (mean == 5.0).all() and np.isinf(rstd).all()
    y, _, rstd = F.layer_norm(x, (8,), eps=1e-5, backend=backend)
    assert (y == 0).all() and np.isfinite(rstd).all()


def test_empty_rows_and_empty_features(backend):
    y, mean, rstd = F.layer_norm(np.ones((0, 4), np.float32), (4,), backend=backend)
    assert y.shape == (0, 4) and mean.shape == rstd.shape == (0,)
    dx, dw, db = F.layer_norm_backward(np.ones((0, 4), np.float32), np.ones((0, 4), np.float32), None, mean, rstd,
                                       (4,), backend=backend)
    assert dx.shape == (0, 4) and (dw == 0).all() and (db == 0).all()
    y, mean, rstd = F.layer_norm(np.ones((3, 0), np.float64), (0,), backend=backend)
    assert y.shape == (3, 0) and np.isnan(mean).all() and np.isnan(rstd).all()


# ---- bad inputs: a clear error, raised before any write (RELIABILITY.md rows 8, 11, 12, 20) ----

def _bad_forward_cases(x, w, b):
    f32 = np.float32
    return [
        (dict(normalized_shape=(8,)), ValueError, r"normalized_shape \(8,\) is not a suffix of x.shape \(4, 6\)"),
        (dict(normalized_shape=(4, 6, 1)), ValueError, "not a suffix"),
        (dict(normalized_shape=()), ValueError, "at least one dimension"),
        (dict(normalized_shape="6"), TypeError, "normalized_shape"),
        (dict(weight=np.ones(5, f32)), ValueError, r"weight has shape \(5,\)"),
        (dict(bias=np.ones((1, 6), f32)), ValueError, "bias has shape"),
        (dict(weight=np.ones(6, np.float64)), TypeError, "weight has dtype float64"),
        (dict(x=x.astype(np.int32)), TypeError, "x must be float16, float32 or float64"),
        (dict(x=x.tolist()), TypeError, "x must be a numpy.ndarray"),
        (dict(eps=-1e-5), ValueError, "Invalid eps"),
        (dict(eps=float("nan")), ValueError, "Invalid eps"),
        (dict(eps=10**400), ValueError, "Invalid eps"),  # past the float range: not finite
        (dict(eps="1e-5"), TypeError, "eps must be a real number, got str"),
        (dict(out=np.empty((4, 6), np.float64)), TypeError, "out has dtype"),
        (dict(out=np.empty((6, 4), f32)), ValueError, "out has shape"),
        (dict(out=np.empty((4, 12), f32)[:, ::2]), ValueError, "out must be C-contiguous"),
        (dict(mean=np.empty(3, f32)), ValueError, "mean has shape"),
        (dict(rstd=np.empty(4, np.float64)), TypeError, "rstd has dtype"),
        (dict(out=x), ValueError, "out overlaps x"),
        (dict(out=np.broadcast_to(np.float32(0), (4, 6))), ValueError, "read-only"),
        (dict(backend="nope"), ValueError, "backend 'nope'"),
    ]


def test_bad_forward_inputs_raise_before_any_write(rng):
    x, w, b = make(rng, (4, 6), (6,), np.float32)
    out, mean, rstd = np.full((4, 6), 7.0, np.float32), np.full(4, 7.0, np.float32), np.full(4, 7.0, np.float32)
    for kwargs, exc, message in _bad_forward_cases(x, w, b):
        args = dict(x=x, normalized_shape=(6,), weight=w, bias=b, out=out, mean=mean, rstd=rstd)
        args.update(kwargs)
        before = snapshot(x, w, b, out, mean, rstd)
        with pytest.raises(exc, match=message):
            F.layer_norm(**args)
        assert unchanged(before, [x, w, b, out, mean, rstd]), kwargs
    shared = np.full(10, 7.0, np.float32)  # mean and rstd in one buffer
    with pytest.raises(ValueError, match="mean overlaps rstd"):
        F.layer_norm(x, (6,), w, b, mean=shared[:4], rstd=shared[2:6])
    assert (shared == 7.0).all()


def test_bad_backward_inputs_raise_before_any_write(rng):
    x, w, _ = make(rng, (4, 6), (6,), np.float32)
    dy = randn(rng, (4, 6), np.float32)
    _, mean, rstd = F.layer_norm(x, (6,), w)
    dx, dw, db = np.full((4, 6), 7.0, np.float32), np.full(6, 7.0, np.float32), np.full(6, 7.0, np.float32)
    cases = [
        (dict(dy=dy[:3]), ValueError, r"dy has shape \(3, 6\)"),
        (dict(dy=dy.astype(np.float64)), TypeError, "dy has dtype float64"),
        (dict(mean=mean[:3]), ValueError, "mean has shape"),
        (dict(rstd=rstd.astype(np.float64)), TypeError, "rstd has dtype"),
        (dict(mean=None), TypeError, "needs the mean and rstd"),
        (dict(weight=w[:5]), ValueError, "weight has shape"),
        (dict(normalized_shape=(4,)), ValueError, "not a suffix"),
        (dict(out=dy), ValueError, "out overlaps dy"),
        (dict(dweight=db), ValueError, "dweight overlaps dbias"),
        (dict(dbias=np.empty(6, np.float64)), TypeError, "dbias has dtype"),
    ]
    for kwargs, exc, message in cases:
        args = dict(dy=dy, x=x, weight=w, mean=mean, rstd=rstd, normalized_shape=(6,), out=dx, dweight=dw, dbias=db)
        args.update(kwargs)
        before = snapshot(dy, x, w, mean, rstd, dx, dw, db)
        with pytest.raises(exc, match=message):
            F.layer_norm_backward(**args)
        assert unchanged(before, [dy, x, w, mean, rstd, dx, dw, db]), kwargs


@pytest.mark.parametrize("dtype", DTYPES)
def test_both_isa_variants_give_the_same_bits(dtype, rng):
    """Every reduction keeps 16 float64 lanes in an order fixed by the length (and FMA contraction is off), so
    the AVX2 and the baseline copies agree bitwise, forward and backward."""
    if "avx2" not in pyopt._c.isas():
        pytest.skip(reason="no AVX2 on this CPU")
    x, w, b = make(rng, (9, 515), (515,), dtype, centre=1e3)
    dy = randn(rng, x.shape, dtype)

    def run():
        y, mean, rstd = F.layer_norm(x, (515,), w, b, backend="c")
        return (y, mean, rstd) + F.layer_norm_backward(dy, x, w, mean, rstd, (515,), backend="c")

    results = both_isas(run)
    for name, a, e in zip(("y", "mean", "rstd", "dx", "dw", "db"), results["avx2"], results["baseline"]):
        assert_bitwise(a, e, name)


def test_misaligned_views_give_the_aligned_result(backend, rng):
    """RELIABILITY.md row 13: a view one element into a buffer (not 32-byte aligned) computes the same bits."""
    buf = off_centre(rng, 1 + 9 * 515, np.float32)
    x = buf[1:].reshape(9, 515)
    assert x.flags.c_contiguous and x.ctypes.data % 32
    dy_buf = randn(rng, 1 + x.size, np.float32)
    dy = dy_buf[1:].reshape(x.shape)
    y, mean, rstd = F.layer_norm(x, (515,), backend=backend)
    dx, dw, db = F.layer_norm_backward(dy, x, None, mean, rstd, (515,), backend=backend)
    aligned = F.layer_norm(x.copy(), (515,), backend=backend)
    for name, a, e in zip(("y", "mean", "rstd"), (y, mean, rstd), aligned):
        assert_bitwise(a, e, name)
    for name, a, e in zip(("dx", "dw", "db"), (dx, dw, db),
                          F.layer_norm_backward(dy.copy(), x.copy(), None, mean, rstd, (515,), backend=backend)):
        assert_bitwise(a, e, name)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(lead=st.lists(st.integers(0, 5), max_size=2), features=st.lists(st.integers(1, 40), min_size=1,
                                                                                      max_size=2),
                  dtype=st.sampled_from([np.float32, np.float64]), centre=st.sampled_from([0.0, 1e3]),
                  seed=st.integers(0, 2**32 - 1))
def test_property_any_shape_matches_the_reference(lead, features, dtype, centre, seed):
    rng = np.random.default_rng(seed)
    shape, nshape = tuple(lead) + tuple(features), tuple(features)
    x, w, b = make(rng, shape, nshape, dtype, centre=centre)
    y, mean, rstd = F.layer_norm(x, nshape, w, b, backend="c")
    y64, _, _ = R.layer_norm(*f64(x), nshape, *f64(w, b))
    assert_close(y, y64, *tolerance(NORM_FORWARD, dtype), "y")
    dy = randn(rng, shape, dtype)
    dx, dw, db = F.layer_norm_backward(dy, x, w, mean, rstd, nshape, backend="c")
    dx64, dw64, db64 = R.layer_norm_backward(*f64(dy, x, w), mean.astype(np.float64), rstd.astype(np.float64),
                                             nshape)
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(dx, dx64, rtol, atol, "dx")
    assert_close(dw, dw64, rtol, atol, "dweight")


def test_bytes_moved_counts_the_minimum_traffic():
    """What the bench rows divide by: fp32 read x + write y per element forward, read dy, x + write dx backward,
    plus the per-row statistics and per-feature parameters."""
    from pyopt.reference.layer_norm import bytes_moved
    M, N = 8192, 768
    assert bytes_moved(M, N, 4) == 4 * (2 * M * N + 2 * N + 2 * M)
    assert bytes_moved(M, N, 4, weight=False, bias=False) == 4 * (2 * M * N + 2 * M)
    assert bytes_moved(M, N, 4, which="backward") == 4 * (3 * M * N + 3 * N + 2 * M)
    assert bytes_moved(M, N, 2, which="both") == bytes_moved(M, N, 2) + bytes_moved(M, N, 2, which="backward")

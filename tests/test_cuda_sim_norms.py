"""The norm kernels of the ``cuda`` backend (LayerNorm, RMSNorm, BatchNorm, forward and backward) under numba's
CUDA simulator, through the functional API on Numba device arrays: against the float64 references at small odd
sizes, several row blocks and reduction items per launch, the backward identities, guard bands, empty batches
and bad input refused before anything is written.

Run in its own process, as tests/test_cuda_sim.py::

    NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim

Sizes stay small (the simulator runs about 5,000 GPU threads a second; blocks have ``_launch.SIM_THREADS``
threads there), so the tree reductions run over several levels and the strided loops over several passes.
"""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.cudasim

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip(reason="simulator tests: run `NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim` in a process of their own",
                allow_module_level=True)

from _compare import assert_bitwise, assert_close  # noqa: E402
from _norm_helpers import f64, off_centre, randn  # noqa: E402
from _tolerances import NORM_BACKWARD, NORM_FORWARD, tolerance  # noqa: E402
from numba import cuda  # noqa: E402

from pyopt import backends  # noqa: E402
from pyopt import functional as F  # noqa: E402
from pyopt import reference as R  # noqa: E402
from pyopt.kernels import _launch, _norm_rules, batch_norm  # noqa: E402

DTYPES = [np.float32, np.float64]
# (rows, cols, weight, bias): a single row and single element, primes and 2^k +- 1 around the block size
LN_CASES = [(1, 1, True, True), (1, 7, False, False), (5, 33, True, False), (3, 129, False, True),
            (2, 513, True, True), (16, 64, True, True)]
BN_CASES = [((4, 3, 5, 7), 1), ((3, 5, 4), -1), ((6, 3), 1), ((2, 3, 65), 1), ((7, 2, 3, 33), -1)]


def dev(a):
    return None if a is None else cuda.to_device(a)


def host(a):
    return a.copy_to_host()


def test_norm_ops_select_the_simulated_cuda_backend():
    assert backends.simulator() and _launch.simulator()
    for op in ("layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward", "batch_norm",
               "batch_norm_backward"):
        name, _ = backends.select(op, on_device=True)
        assert name == "cuda"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols,has_w,has_b", LN_CASES, ids=str)
def test_layer_norm_forward_and_backward_match_the_reference(rows, cols, has_w, has_b, dtype, rng):
    x = off_centre(rng, (rows, cols), dtype)
    w = off_centre(rng, (cols,), dtype, centre=1.0, spread=0.5) if has_w else None
    b = randn(rng, (cols,), dtype) if has_b else None
    dy = randn(rng, (rows, cols), dtype)
    y, mean, rstd = F.layer_norm(dev(x), (cols,), dev(w), dev(b), eps=1e-5)
    assert all(type(a).__name__ == "FakeCUDAArray" for a in (y, mean, rstd))  # fresh outputs on the device
    y64, mean64, rstd64 = R.layer_norm(*f64(x), (cols,), *f64(w, b), eps=1e-5)
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    for name, a, e in (("y", y, y64), ("mean", mean, mean64), ("rstd", rstd, rstd64)):
        assert host(a).dtype == dtype
        assert_close(host(a), e, rtol, atol, name)
    dx, dw, db = F.layer_norm_backward(dev(dy), dev(x), dev(w), mean, rstd, (cols,))
    dx64, dw64, db64 = R.layer_norm_backward(*f64(dy, x, w), *f64(host(mean), host(rstd)), (cols,))
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    for name, a, e in (("dx", dx, dx64), ("dweight", dw, dw64), ("dbias", db, db64)):
        assert_close(host(a), e, rtol, atol, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols,has_w", [(1, 1, True), (1, 7, False), (5, 33, True), (3, 129, False),
                                             (2, 513, True)], ids=str)
def test_rms_norm_forward_and_backward_match_the_reference(rows, cols, has_w, dtype, rng):
    x = off_centre(rng, (rows, cols), dtype)
    w = off_centre(rng, (cols,), dtype, centre=1.0, spread=0.5) if has_w else None
    dy = randn(rng, (rows, cols), dtype)
    y, rstd = F.rms_norm(dev(x), (cols,), dev(w), eps=1e-6)
    y64, rstd64 = R.rms_norm(*f64(x), (cols,), *f64(w), eps=1e-6)
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    assert_close(host(y), y64, rtol, atol, "y")
    assert_close(host(rstd), rstd64, rtol, atol, "rstd")
    dx, dw = F.rms_norm_backward(dev(dy), dev(x), dev(w), rstd, (cols,))
    dx64, dw64 = R.rms_norm_backward(*f64(dy, x, w), *f64(host(rstd)), (cols,))
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(host(dx), dx64, rtol, atol, "dx")
    assert_close(host(dw), dw64, rtol, atol, "dweight")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", BN_CASES, ids=str)
def test_batch_norm_forward_and_backward_match_the_reference(shape, axis, dtype, training, rng):
    """NCHW (planar runs), channels-last (axis -1: a thread per channel), BatchNorm1d; training and eval."""
    C = shape[axis]
    x = off_centre(rng, shape, dtype)
    w, b = off_centre(rng, (C,), dtype, centre=1.0, spread=0.5), randn(rng, (C,), dtype)
    rm, rv = randn(rng, (C,), dtype), (0.5 + rng.random(C)).astype(dtype)
    dy = randn(rng, shape, dtype)
    drm, drv = dev(rm), dev(rv)
    y, sm, sr = F.batch_norm(dev(x), dev(w), dev(b), drm, drv, training=training, momentum=0.1, axis=axis)
    rm64, rv64 = f64(rm, rv)
    y64, sm64, sr64 = R.batch_norm(*f64(x, w, b), rm64, rv64, training=training, momentum=0.1, axis=axis)
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    for name, a, e in (("y", y, y64), ("save_mean", sm, sm64), ("save_rstd", sr, sr64),
                       ("running_mean", drm, rm64), ("running_var", drv, rv64)):
        assert_close(host(a), e, rtol, atol, name)
    dx, dw, db = F.batch_norm_backward(dev(dy), dev(x), dev(w), sm, sr, training=training, axis=axis)
    dx64, dw64, db64 = R.batch_norm_backward(*f64(dy, x, w), *f64(host(sm), host(sr)), training=training,
                                             axis=axis)
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    for name, a, e in (("dx", dx, dx64), ("dweight", dw, dw64), ("dbias", db, db64)):
        assert_close(host(a), e, rtol, atol, name)


@pytest.mark.parametrize("axis", [1, -1])
def test_batch_norm_without_affine_or_running_stats_and_momentum_none(axis, rng):
    """weight/bias None, no running stats (batch statistics in eval too), then momentum=None over three batches:
    the running stats are the mean of the batch statistics and the host counter counts the batches."""
    shape = (5, 3, 6) if axis == 1 else (5, 6, 3)
    x = off_centre(rng, shape, np.float64)
    y, _, _ = F.batch_norm(dev(x), training=False, axis=axis)
    assert_close(host(y), R.batch_norm(x, training=False, axis=axis)[0], 1e-7, 1e-7, "y, no running stats")
    rm, rv, counter = dev(np.zeros(3)), dev(np.ones(3)), np.zeros(1, np.int64)
    means, variances = [], []
    for step in range(3):
        x = off_centre(rng, shape, np.float64, centre=step)
        F.batch_norm(dev(x), None, None, rm, rv, training=True, momentum=None, num_batches_tracked=counter,
                     axis=axis)
        per = np.moveaxis(x, axis, -1).reshape(-1, 3)
        means.append(per.mean(axis=0))
        variances.append(per.var(axis=0, ddof=1))
    assert int(counter[0]) == 3
    assert_close(host(rm), np.mean(means, axis=0), 1e-12, 1e-12, "running_mean")
    assert_close(host(rv), np.mean(variances, axis=0), 1e-12, 1e-12, "running_var")


def test_many_row_blocks_items_and_slices(monkeypatch, rng):
    """Grid-stride over rows (a grid of 2 blocks), several rows per backward block, BatchNorm items of several
    rows and inner slices: the partitions a large tensor gets on a GPU, at simulator sizes."""
    monkeypatch.setattr(_launch, "MAX_BLOCKS", 2)
    monkeypatch.setattr(_norm_rules, "GPU_ROW_BLOCKS", 3)
    monkeypatch.setattr(batch_norm, "BLOCK", 48)
    x, w, dy = off_centre(rng, (11, 40), np.float64), off_centre(rng, (40,), np.float64, 1.0, 0.5), randn(
        rng, (11, 40), np.float64)
    y, mean, rstd = F.layer_norm(dev(x), (40,), dev(w))
    assert_close(host(y), R.layer_norm(x, (40,), w)[0], 1e-7, 1e-7, "layer_norm y")
    dx, dw, db = F.layer_norm_backward(dev(dy), dev(x), dev(w), mean, rstd, (40,))
    for name, a, e in zip(("dx", "dw", "db"), (dx, dw, db),
                          R.layer_norm_backward(dy, x, w, host(mean), host(rstd), (40,))):
        assert_close(host(a), e, 1e-7, 1e-7, name)
    dxr, dwr = F.rms_norm_backward(dev(dy), dev(x), dev(w), F.rms_norm(dev(x), (40,), dev(w))[1], (40,))
    assert_close(host(dwr), R.rms_norm_backward(dy, x, w, R.rms_norm(x, (40,), w)[1], (40,))[1], 1e-7, 1e-7,
                 "rms dweight")
    for shape, axis in (((5, 2, 100), 1), ((7, 5, 20), 1), ((9, 30), -1)):  # slices; rows per item; row groups
        xb, dyb = off_centre(rng, shape, np.float64), randn(rng, shape, np.float64)
        yb, sm, sr = F.batch_norm(dev(xb), training=True, axis=axis)
        y64, sm64, sr64 = R.batch_norm(xb, training=True, axis=axis)
        assert_close(host(yb), y64, 1e-7, 1e-7, f"batch_norm y {shape}")
        assert_close(host(sr), sr64, 1e-7, 1e-7, f"batch_norm save_rstd {shape}")
        g = F.batch_norm_backward(dev(dyb), dev(xb), None, sm, sr, axis=axis)
        for name, a, e in zip(("dx", "dw", "db"), g, R.batch_norm_backward(dyb, xb, None, sm64, sr64, axis=axis)):
            assert_close(host(a), e, 1e-7, 1e-7, f"batch_norm {name} {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_identities_and_repeatability(dtype, rng):
    """dbias == sum(dy); LayerNorm dx rows and BatchNorm training dx channels sum to zero; a second call gives
    the same bits (fixed reduction order)."""
    x, w, dy = off_centre(rng, (6, 37), dtype, centre=1e3), off_centre(rng, (37,), dtype, 1.0, 0.5), randn(
        rng, (6, 37), dtype)
    _, mean, rstd = F.layer_norm(dev(x), (37,), dev(w))
    dx, _, db = F.layer_norm_backward(dev(dy), dev(x), dev(w), mean, rstd, (37,))
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(host(db), dy.astype(np.float64).sum(axis=0), rtol, atol, "dbias vs sum(dy)")
    scale = np.abs(dy.astype(np.float64) * w).sum(axis=1)
    assert_close(host(dx).astype(np.float64).sum(axis=1) / scale, np.zeros(6), 0, 10 * atol, "row sums of dx")
    again = F.layer_norm_backward(dev(dy), dev(x), dev(w), mean, rstd, (37,))
    for name, a, e in zip(("dx", "dw", "db"), again, (dx, _, db)):
        assert_bitwise(host(a), host(e), name)
    xb, dyb = off_centre(rng, (4, 3, 9), dtype, centre=1e3), randn(rng, (4, 3, 9), dtype)
    _, sm, sr = F.batch_norm(dev(xb), training=True)
    dxb, _, dbb = F.batch_norm_backward(dev(dyb), dev(xb), None, sm, sr)
    assert_close(host(dbb), dyb.astype(np.float64).sum(axis=(0, 2)), rtol, atol, "BN dbias vs sum(dy)")
    scale = np.abs(dyb.astype(np.float64)).sum(axis=(0, 2)) * host(sr)
    assert_close(host(dxb).astype(np.float64).sum(axis=(0, 2)) / scale, np.zeros(3), 0, 10 * atol,
                 "channel sums of dx")


def guarded(shape, dtype, pad=5):
    """(device view, device buffer): an output inside a NaN-filled device buffer, ``pad`` elements each side."""
    n = int(np.prod(shape))
    buf = cuda.to_device(np.full(n + 2 * pad, np.nan, dtype))
    return buf[pad:pad + n].reshape(shape), buf


def untouched(buf, pad=5):
    a = host(buf)
    return bool(np.isnan(a[:pad]).all() and np.isnan(a[-pad:]).all())


def test_outputs_inside_guard_bands(rng):
    x, w, b, dy = (off_centre(rng, (7, 33), np.float32), off_centre(rng, (33,), np.float32, 1.0, 0.5),
                   randn(rng, (33,), np.float32), randn(rng, (7, 33), np.float32))
    (y, yb), (m, mb), (r, rb) = guarded((7, 33), np.float32), guarded((7,), np.float32), guarded((7,), np.float32)
    out = F.layer_norm(dev(x), (33,), dev(w), dev(b), out=y, mean=m, rstd=r)
    assert out[0] is y and out[1] is m and out[2] is r  # written in place
    (dx, dxb), (dw, dwb), (db, dbb) = guarded((7, 33), np.float32), guarded((33,), np.float32), guarded(
        (33,), np.float32)
    F.layer_norm_backward(dev(dy), dev(x), dev(w), m, r, (33,), out=dx, dweight=dw, dbias=db)
    (yr, yrb), (rr, rrb) = guarded((7, 33), np.float32), guarded((7,), np.float32)
    F.rms_norm(dev(x), (33,), dev(w), out=yr, rstd=rr)
    (dxr, dxrb), (dwr, dwrb) = guarded((7, 33), np.float32), guarded((33,), np.float32)
    F.rms_norm_backward(dev(dy), dev(x), dev(w), rr, (33,), out=dxr, dweight=dwr)
    xb, dyb = off_centre(rng, (3, 4, 5), np.float32), randn(rng, (3, 4, 5), np.float32)
    (yn, ynb), (sm, smb), (sr, srb) = guarded((3, 4, 5), np.float32), guarded((4,), np.float32), guarded(
        (4,), np.float32)
    F.batch_norm(dev(xb), training=True, out=yn, save_mean=sm, save_rstd=sr)
    (dxn, dxnb), (dwn, dwnb), (dbn, dbnb) = guarded((3, 4, 5), np.float32), guarded((4,), np.float32), guarded(
        (4,), np.float32)
    F.batch_norm_backward(dev(dyb), dev(xb), None, sm, sr, out=dxn, dweight=dwn, dbias=dbn)
    for name, buf in (("y", yb), ("mean", mb), ("rstd", rb), ("dx", dxb), ("dw", dwb), ("db", dbb), ("rms y", yrb),
                      ("rms rstd", rrb), ("rms dx", dxrb), ("rms dw", dwrb), ("bn y", ynb), ("save_mean", smb),
                      ("save_rstd", srb), ("bn dx", dxnb), ("bn dw", dwnb), ("bn db", dbnb)):
        assert untouched(buf), name
    y64 = R.layer_norm(x.astype(np.float64), (33,), w.astype(np.float64), b.astype(np.float64))[0]
    assert_close(host(y), y64, *tolerance(NORM_FORWARD, np.float32), "y in the guarded buffer")
    assert_close(host(dxn), R.batch_norm_backward(*f64(dyb, xb), None, *f64(host(sm), host(sr)))[0],
                 *tolerance(NORM_BACKWARD, np.float32), "bn dx in the guarded buffer")


def test_empty_batch_and_empty_rows_on_the_device(rng):
    """BatchNorm with no values per channel: empty y, NaN batch statistics, running stats and counter unchanged;
    eval: the running stats' saved values.  LayerNorm with no rows: empty outputs, zero dweight/dbias."""
    rm, rv, counter = np.array([0.5, -1.0], np.float32), np.array([2.0, 3.0], np.float32), np.full(1, 4, np.int64)
    drm, drv = dev(rm), dev(rv)
    y, sm, sr = F.batch_norm(dev(np.empty((0, 2, 3), np.float32)), None, None, drm, drv, training=True,
                             momentum=None, num_batches_tracked=counter)
    assert host(y).shape == (0, 2, 3) and np.isnan(host(sm)).all() and np.isnan(host(sr)).all()
    assert_bitwise(host(drm), rm, "running_mean") and int(counter[0]) == 4
    assert_bitwise(host(drv), rv, "running_var")
    _, sm, sr = F.batch_norm(dev(np.empty((0, 2), np.float32)), None, None, drm, drv, training=False)
    assert_bitwise(host(sm), rm, "eval save_mean")
    assert_close(host(sr), 1 / np.sqrt(rv.astype(np.float64) + 1e-5), 1.3e-6, 0, "eval save_rstd")
    _, dw, db = F.batch_norm_backward(dev(np.empty((0, 2, 3), np.float32)), dev(np.empty((0, 2, 3), np.float32)),
                                      None, sm, sr)
    assert (host(dw) == 0).all() and (host(db) == 0).all()
    x = dev(np.empty((0, 4), np.float32))
    y, mean, rstd = F.layer_norm(x, (4,))
    assert host(y).shape == (0, 4) and host(mean).shape == (0,)
    _, dw, db = F.layer_norm_backward(x, x, None, mean, rstd, (4,))
    assert (host(dw) == 0).all() and (host(db) == 0).all()


def test_bad_device_inputs_raise_before_any_write(rng):
    """Shape, dtype, float16, contiguity, host/device mixes and aliasing: refused with the argument's name, and
    every device output left as it was."""
    x, w = dev(off_centre(rng, (4, 6), np.float32)), dev(off_centre(rng, (6,), np.float32))
    out, mean, rstd = (dev(np.full((4, 6), 7.0, np.float32)), dev(np.full(4, 7.0, np.float32)),
                       dev(np.full(4, 7.0, np.float32)))
    wide = dev(np.zeros((4, 12), np.float32))
    cases = [
        (dict(weight=dev(np.ones(5, np.float32))), ValueError, r"weight has shape \(5,\)"),
        (dict(weight=dev(np.ones(6, np.float64))), TypeError, "weight has dtype float64"),
        (dict(x=dev(np.ones((4, 6), np.float16))), TypeError, "x must be float32 or float64"),
        (dict(x=wide[:, ::2]), ValueError, "x is a CUDA array that is not C-contiguous"),
        (dict(weight=np.ones(6, np.float32)), ValueError, "weight is on cpu but x is on cuda"),
        (dict(out=np.empty((4, 6), np.float32)), ValueError, "out is on cpu"),
        (dict(out=dev(np.empty((4, 6), np.float64))), TypeError, "out has dtype"),
        (dict(mean=dev(np.empty(3, np.float32))), ValueError, "mean has shape"),
        (dict(out=x), ValueError, "out overlaps x"),
        (dict(rstd=mean), ValueError, "mean overlaps rstd"),
        (dict(normalized_shape=(5,)), ValueError, "not a suffix"),
        (dict(backend="c"), ValueError, "CUDA device arrays"),
    ]
    for kwargs, exc, message in cases:
        args = dict(x=x, normalized_shape=(6,), weight=w, out=out, mean=mean, rstd=rstd)
        args.update(kwargs)
        with pytest.raises(exc, match=message):
            F.layer_norm(**args)
        assert (host(out) == 7).all() and (host(mean) == 7).all() and (host(rstd) == 7).all(), kwargs
    xb = dev(off_centre(rng, (4, 3, 5), np.float32))
    rm, rv = dev(np.full(3, 7.0, np.float32)), dev(np.full(3, 7.0, np.float32))
    for kwargs, exc, message in [
            (dict(running_mean=dev(np.zeros(2, np.float32))), ValueError, "running_mean has shape"),
            (dict(weight=np.ones(3, np.float32)), ValueError, "weight is on cpu"),
            (dict(x=dev(np.ones((1, 3), np.float32))), ValueError, "Expected more than 1 value per channel"),
            (dict(out=xb), ValueError, "out overlaps x")]:
        args = dict(x=xb, running_mean=rm, running_var=rv, training=True)
        args.update(kwargs)
        with pytest.raises(exc, match=message):
            F.batch_norm(**args)
        assert (host(rm) == 7).all() and (host(rv) == 7).all(), kwargs

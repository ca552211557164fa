"""BatchNorm: every backend against the float64 reference in NCHW, channels-last and odd shapes, training and
eval; running statistics over several steps equal the formulas (RELIABILITY.md invariant 10), momentum=None as
a cumulative average, layout equivalence (8), backward identities and finite differences (11), batch size 0
and one value per channel (21-23), parity with torch in float64, determinism, guard bands, bad inputs."""
import contextlib

import numpy as np
import pytest
from _compare import assert_bitwise, assert_close
from _backends import backend_id, use_backend
from _norm_helpers import (BACKENDS, DTYPES, both_isas, f64, guarded, margins_untouched, numeric_grad, off_centre,
                           randn, snapshot, unchanged)
from _tolerances import NORM_BACKWARD, NORM_FORWARD, NORM_OFF_CENTRE_ATOL, NORM_VS_TORCH, tolerance

import pyopt
from pyopt import functional as F
from pyopt import reference as R

# (shape, axis): NCHW, channels-last, BatchNorm1d (N, C) and (N, C, L), runs longer than a reduction tile,
# more channels than a tile holds, one sample with 2 values per channel, one channel
CASES = [((4, 5, 6, 7), 1), ((4, 6, 7, 5), -1), ((9, 5), 1), ((3, 5, 33), 1), ((2, 3, 20011), 1),
         ((3, 20011), 1), ((20011, 3), -1), ((2, 7, 33000), 1), ((1, 3, 2), 1), ((2, 3, 4, 5, 6), 2),
         ((5, 1, 7), 1), ((1, 2), 0), ((6, 1), -1),  # a single channel, planar and channels-last
         ((3, 9, 5, 7), 1)]  # 8 channels or more: the channel path


@contextlib.contextmanager
def _overriding(setter, nbytes):
    previous = setter(nbytes)
    try:
        yield
    finally:
        setter(previous)


def cache_model(nbytes):
    """The C kernels planning for a cache of ``nbytes`` (None: this machine's).  0 sends every call down the
    tiled path with streamed outputs; the machine's cache sends small planar shapes channel by channel."""
    return _overriding(pyopt._c.set_cache_bytes, nbytes)


def channel_groups(nbytes):
    """The C backward's channel path taking ``nbytes`` of each row's runs at once (0: one channel at a time; None:
    this CPU's default, which is 0 on Zen 5), so both ways are covered on any machine."""
    return _overriding(pyopt._c.set_bn_group_bytes, nbytes)


@pytest.fixture(params=[*BACKENDS, ("c-tiled", "avx2"), ("numba-tiled", None)], ids=backend_id)
def backend(request):
    """The norm tests' backends plus ``c-tiled`` and ``numba-tiled``: the C and Numba kernels with a cache model of
    0 bytes, so small shapes also meet every assertion on the tiled path (and streamed stores) that large ones
    take."""
    name, isa = request.param
    with cache_model(0 if name.endswith("-tiled") else None):
        yield from use_backend(type("Request", (), {"param": (name.removesuffix("-tiled"), isa)})())


PATHS = pytest.mark.parametrize("cache", [None, 0], ids=["planned", "tiled"])


def channels(shape, axis):
    return shape[axis]


def make(rng, shape, axis, dtype, affine=True, centre=3.0):
    C = channels(shape, axis)
    x = off_centre(rng, shape, dtype, centre=centre)
    w = off_centre(rng, (C,), dtype, centre=1.0, spread=0.5) if affine else None
    b = randn(rng, (C,), dtype) if affine else None
    rm, rv = randn(rng, (C,), dtype), (0.5 + rng.random(C)).astype(dtype)
    return x, w, b, rm, rv


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", CASES, ids=str)
def test_forward_matches_float64_reference(shape, axis, dtype, training, affine, backend, rng):
    x, w, b, rm, rv = make(rng, shape, axis, dtype, affine)
    rm64, rv64 = f64(rm, rv)
    y, save_mean, save_rstd = F.batch_norm(x, w, b, rm, rv, training=training, momentum=0.1, eps=1e-5, axis=axis,
                                           backend=backend)
    y64, mean64, rstd64 = R.batch_norm(*f64(x, w, b), rm64, rv64, training=training, momentum=0.1, eps=1e-5,
                                       axis=axis)
    assert y.dtype == save_mean.dtype == rm.dtype == dtype and y.shape == shape
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    for name, a, e in (("y", y, y64), ("save_mean", save_mean, mean64), ("save_rstd", save_rstd, rstd64),
                       ("running_mean", rm, rm64), ("running_var", rv, rv64)):
        assert_close(a, e, rtol, atol, name)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", CASES, ids=str)
def test_backward_matches_float64_reference(shape, axis, dtype, training, backend, rng):
    x, w, b, rm, rv = make(rng, shape, axis, dtype)
    dy = randn(rng, shape, dtype)
    _, save_mean, save_rstd = F.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training, axis=axis,
                                           backend=backend)
    dx, dw, db = F.batch_norm_backward(dy, x, w, save_mean, save_rstd, training=training, axis=axis,
                                       backend=backend)
    _, mean64, rstd64 = R.batch_norm(*f64(x, w, b, rm, rv), training=training, axis=axis)
    dx64, dw64, db64 = R.batch_norm_backward(*f64(dy, x, w), mean64, rstd64, training=training, axis=axis)
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(dx, dx64, rtol, atol, "dx")
    assert_close(dw, dw64, rtol, atol, "dweight")
    assert_close(db, db64, rtol, atol, "dbias")


def test_float32_channels_far_from_zero_are_accurate(backend, rng):
    """RELIABILITY.md row 24 for channels: 1e4 + 1e-2 randn within the LayerNorm claim of the float64 answer."""
    x = off_centre(rng, (16, 4, 30, 30), np.float32, centre=1e4, spread=1e-2)
    y, _, _ = F.batch_norm(x, training=True, backend=backend)
    y64, _, _ = R.batch_norm(x.astype(np.float64), training=True)
    assert np.abs(y - y64).max() <= NORM_OFF_CENTRE_ATOL["1e4 + 1e-2 randn"]


@pytest.mark.parametrize("head_offset", [0.0, 1.8, 300.0])
def test_float32_statistics_survive_a_far_first_stretch(head_offset, backend, rng):
    """As LayerNorm's test of that name, for the channel path's shift: the first 16 values of each channel's
    first run sit head_offset deviations above a 1e4 + 1e-2 randn channel of 65536 values."""
    x = off_centre(rng, (16, 2, 64, 64), np.float32, centre=1e4, spread=1e-2)
    x.reshape(16, 2, -1)[0, :, :16] += np.float32(1e-2 * head_offset)
    y, _, save_rstd = F.batch_norm(x, training=True, backend=backend)
    y64, _, rstd64 = R.batch_norm(x.astype(np.float64), training=True)
    assert np.abs(y - y64).max() <= NORM_OFF_CENTRE_ATOL["1e4 + 1e-2 randn"]
    assert_close(save_rstd, rstd64, 1e-5, 0.0, "save_rstd")


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("shape,axis", [((8, 3, 5, 5), 1), ((8, 5, 5, 3), -1)], ids=str)
def test_running_stats_follow_the_formulas_over_several_steps(shape, axis, momentum, backend, rng):
    """rm = (1-m) rm + m mean, rv = (1-m) rv + m var n/(n-1); momentum None: the cumulative average of the batch
    statistics, with num_batches_tracked counting the batches."""
    C = channels(shape, axis)
    rm, rv = np.zeros(C), np.ones(C)
    counter = np.zeros((), np.int64)
    expected_rm, expected_rv = rm.copy(), rv.copy()
    means, variances = [], []
    n = int(np.prod(shape)) // C
    for step in range(1, 6):
        x = off_centre(rng, shape, np.float64, centre=step)
        F.batch_norm(x, None, None, rm, rv, training=True, momentum=momentum, axis=axis,
                     num_batches_tracked=counter, backend=backend)
        per_channel = np.moveaxis(x, axis, -1).reshape(-1, C)
        mean, unbiased = per_channel.mean(axis=0), per_channel.var(axis=0) * n / (n - 1)
        means.append(mean)
        variances.append(unbiased)
        if momentum is None:  # factor 1/t: the first batch replaces the initial values, then a running mean
            expected_rm, expected_rv = np.mean(means, axis=0), np.mean(variances, axis=0)
        else:
            expected_rm = (1 - momentum) * expected_rm + momentum * mean
            expected_rv = (1 - momentum) * expected_rv + momentum * unbiased
        assert int(counter) == step
        assert_close(rm, expected_rm, 1e-12, 1e-12, f"running_mean after step {step}")
        assert_close(rv, expected_rv, 1e-12, 1e-12, f"running_var after step {step}")


def test_eval_mode_uses_running_stats_and_is_deterministic(backend, rng):
    x, w, b, rm, rv = make(rng, (6, 4, 9, 9), 1, np.float32)
    before = snapshot(rm, rv)
    y1, m1, r1 = F.batch_norm(x, w, b, rm, rv, training=False, backend=backend)
    y2, _, _ = F.batch_norm(x, w, b, rm, rv, training=False, backend=backend)
    assert_bitwise(y1, y2, "eval output run after run")
    assert unchanged(before, [rm, rv])
    assert_bitwise(m1, rm, "save_mean in eval is the running mean")
    expected = (x - rm[:, None, None]) / np.sqrt(rv[:, None, None].astype(np.float64) + 1e-5) * w[:, None, None] \
        + b[:, None, None]
    assert_close(y1, expected, *tolerance(NORM_FORWARD, np.float32), "eval formula")
    yb, _, _ = F.batch_norm(x, w, b, None, None, training=False, backend=backend)  # no running stats: batch stats
    yt, _, _ = F.batch_norm(x, w, b, None, None, training=True, backend=backend)
    assert_bitwise(yb, yt, "eval without running stats == training")


def test_layouts_give_the_same_result(backend, rng):
    """Invariant 8: NCHW contiguous == channels_last memory (NHWC data seen as NCHW) == a non-contiguous view ==
    axis=-1 on the NHWC array; y keeps the input's memory layout."""
    nhwc = off_centre(rng, (4, 7, 6, 5), np.float32)
    w, b = off_centre(rng, (5,), np.float32, 1.0, 0.5), randn(rng, (5,), np.float32)
    dy_nhwc = randn(rng, nhwc.shape, np.float32)
    nchw_view = nhwc.transpose(0, 3, 1, 2)  # channels_last memory format
    nchw = np.ascontiguousarray(nchw_view)
    strided = np.repeat(nchw, 2, axis=3)[..., ::2]  # a non-contiguous view holding the same values
    rtol, atol = tolerance(NORM_FORWARD, np.float32)
    y_last, m_last, r_last = F.batch_norm(nhwc, w, b, training=True, axis=-1, backend=backend)
    y_view, m_view, r_view = F.batch_norm(nchw_view, w, b, training=True, axis=1, backend=backend)
    assert y_view.transpose(0, 2, 3, 1).flags.c_contiguous  # the output kept channels_last
    assert_bitwise(y_view.transpose(0, 2, 3, 1), y_last, "channels_last view == axis=-1")
    y_nchw, m_nchw, r_nchw = F.batch_norm(nchw, w, b, training=True, axis=1, backend=backend)
    y_strided, _, _ = F.batch_norm(strided, w, b, training=True, axis=1, backend=backend)
    assert_bitwise(y_strided, y_nchw, "non-contiguous == contiguous")
    assert_close(y_nchw, y_view, rtol, atol, "NCHW == channels_last")
    assert_close(m_nchw, m_view, rtol, atol, "save_mean")
    dx_view, dw_view, db_view = F.batch_norm_backward(dy_nhwc.transpose(0, 3, 1, 2), nchw_view, w, m_view, r_view,
                                                      axis=1, backend=backend)
    dx_nchw, dw_nchw, db_nchw = F.batch_norm_backward(np.ascontiguousarray(dy_nhwc.transpose(0, 3, 1, 2)), nchw, w,
                                                      m_nchw, r_nchw, axis=1, backend=backend)
    rtol, atol = tolerance(NORM_BACKWARD, np.float32)
    assert dx_view.transpose(0, 2, 3, 1).flags.c_contiguous
    assert_close(dx_view, dx_nchw, rtol, atol, "dx")
    assert_close(dw_view, dw_nchw, rtol, atol, "dweight")
    assert_close(db_view, db_nchw, rtol, atol, "dbias")


def test_batch_size_zero_gives_empty_output_and_leaves_running_stats(backend, rng):
    """RELIABILITY.md row 22 (PyTorch #12013)."""
    rm, rv, counter = randn(rng, (3,), np.float32), np.ones(3, np.float32), np.full(1, 4, np.int64)
    before = snapshot(rm, rv, counter)
    y, save_mean, save_rstd = F.batch_norm(np.empty((0, 3, 4, 4), np.float32), None, None, rm, rv, training=True,
                                           momentum=None, num_batches_tracked=counter, backend=backend)
    assert y.shape == (0, 3, 4, 4)
    assert unchanged(before, [rm, rv, counter])
    assert np.isnan(save_mean).all() and np.isnan(save_rstd).all()
    dx, dw, db = F.batch_norm_backward(np.empty((0, 3, 4, 4), np.float32), np.empty((0, 3, 4, 4), np.float32),
                                       None, save_mean, save_rstd, backend=backend)
    assert dx.shape == (0, 3, 4, 4) and (dw == 0).all() and (db == 0).all()
    y, save_mean, save_rstd = F.batch_norm(np.empty((0, 3), np.float32), None, None, rm, rv, training=False,
                                           axis=-1, backend=backend)
    assert y.shape == (0, 3) and unchanged(before, [rm, rv, counter])
    assert_bitwise(save_mean, rm, "eval save_mean")
    assert_close(save_rstd, 1 / np.sqrt(rv.astype(np.float64) + 1e-5), 1.3e-6, 0, "eval save_rstd")


def test_one_value_per_channel_in_training_raises(backend):
    """RELIABILITY.md row 21, PyTorch's message; eval mode accepts it."""
    x, rm, rv = np.ones((1, 3), np.float32), np.zeros(3, np.float32), np.ones(3, np.float32)
    before = snapshot(rm, rv)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size "
                                         r"\(1, 3\)"):
        F.batch_norm(x, None, None, rm, rv, training=True, backend=backend)
    assert unchanged(before, [rm, rv])
    y, _, _ = F.batch_norm(x, None, None, rm, rv, training=False, backend=backend)
    assert_close(y, np.full((1, 3), 1 / np.sqrt(1 + 1e-5)), 1e-6, 1e-6, "eval")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,axis", [((3, 2, 2), 1), ((4, 3), -1)], ids=str)
def test_backward_agrees_with_finite_differences(shape, axis, training, backend, rng):
    x, w, b, rm, rv = make(rng, shape, axis, np.float64, centre=0.7)
    r = randn(rng, shape, np.float64)

    def loss():
        return float((R.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training, axis=axis)[0] * r).sum())

    _, save_mean, save_rstd = F.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training, axis=axis,
                                           backend=backend)
    dx, dw, db = F.batch_norm_backward(r, x, w, save_mean, save_rstd, training=training, axis=axis,
                                       backend=backend)
    assert_close(dx, numeric_grad(loss, x), 1e-6, 1e-7, "dx vs finite differences")
    assert_close(dw, numeric_grad(loss, w), 1e-6, 1e-7, "dweight vs finite differences")
    assert_close(db, numeric_grad(loss, b), 1e-6, 1e-7, "dbias vs finite differences")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((6, 4, 17, 13), 1), ((6, 17, 13, 4), -1)], ids=str)
def test_backward_identities(shape, axis, dtype, backend, rng):
    """dbias == sum(dy) per channel; in training dx sums to zero per channel."""
    x, w, b, rm, rv = make(rng, shape, axis, dtype, centre=1e3)
    dy = randn(rng, shape, dtype)
    _, sm, sr = F.batch_norm(x, w, b, rm, rv, training=True, axis=axis, backend=backend)
    dx, _, db = F.batch_norm_backward(dy, x, w, sm, sr, axis=axis, backend=backend)
    C = channels(shape, axis)
    per = lambda a: np.moveaxis(a.astype(np.float64), axis, -1).reshape(-1, C)  # noqa: E731
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    assert_close(db, per(dy).sum(axis=0), rtol, atol, "dbias vs sum(dy)")
    scale = np.abs(per(dy)).sum(axis=0) * np.abs(w) * sr  # the size of the terms that cancel
    assert_close(per(dx).sum(axis=0) / scale, np.zeros(C), 0, 10 * atol, "channel sums of dx")


def test_reference_matches_torch_in_float64(rng):
    torch = pytest.importorskip("torch")
    for training in (True, False):
        x, w, b, rm, rv = make(rng, (5, 4, 6, 3), 1, np.float64)
        dy = randn(rng, x.shape, np.float64)
        rm_t, rv_t = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
        xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training=training, momentum=0.2, eps=1e-4)
        y, mean, rstd = R.batch_norm(x, w, b, rm, rv, training=training, momentum=0.2, eps=1e-4)
        rtol, atol = tolerance(NORM_VS_TORCH, np.float64)
        assert_close(y, yt.detach().numpy(), rtol, atol, "y")
        assert_close(rm, rm_t.numpy(), rtol, atol, "running_mean")
        assert_close(rv, rv_t.numpy(), rtol, atol, "running_var")
        yt.backward(torch.from_numpy(dy))
        dx, dw, db = R.batch_norm_backward(dy, x, w, mean, rstd, training=training)
        assert_close(dx, xt.grad.numpy(), rtol, atol, "dx")
        assert_close(dw, wt.grad.numpy(), rtol, atol, "dweight")
        assert_close(db, bt.grad.numpy(), rtol, atol, "dbias")


@PATHS
@pytest.mark.parametrize("dtype", DTYPES)
# (6, 37, 7, 7): with 12 KB groups, backward channel groups of 18 with 1 thread, 9 with 2 (a last group of 1 either
# way); 1 channel: fewer than 2 threads
@pytest.mark.parametrize("shape,axis", [((16, 8, 30, 30), 1), ((16, 30, 30, 8), -1), ((4, 3, 40000), 1),
                                        ((6, 37, 7, 7), 1), ((3, 1, 5, 7), 1)], ids=str)
@pytest.mark.parametrize("group_bytes", [0, 12288], ids=["by-channel", "groups"])
def test_bitwise_identical_for_1_and_2_threads(shape, axis, dtype, cache, group_bytes, rng):
    x, w, b, rm, rv = make(rng, shape, axis, dtype)
    dy = randn(rng, shape, dtype)
    results = []
    previous = pyopt.get_num_threads()
    try:
        for threads in (1, 2, 1):
            pyopt.set_num_threads(threads)
            rm_k, rv_k = rm.copy(), rv.copy()
            with cache_model(cache), channel_groups(group_bytes):
                y, sm, sr = F.batch_norm(x, w, b, rm_k, rv_k, training=True, axis=axis, backend="c")
                dx, dw, db = F.batch_norm_backward(dy, x, w, sm, sr, axis=axis, backend="c")
                dxe, dwe, dbe = F.batch_norm_backward(dy, x, w, sm, sr, training=False, axis=axis, backend="c")
            results.append((y, sm, sr, rm_k, rv_k, dx, dw, db, dxe, dwe, dbe))
    finally:
        pyopt.set_num_threads(previous)
    names = ("y", "save_mean", "save_rstd", "running_mean", "running_var", "dx", "dw", "db", "dx eval", "dw eval",
             "db eval")
    for other in results[1:]:
        for name, a, e in zip(names, other, results[0]):
            assert_bitwise(a, e, name)


@pytest.mark.parametrize("shape,axis", [((3, 4, 5, 5), 1), ((3, 5, 5, 4), -1)], ids=str)
def test_outputs_inside_guard_bands(shape, axis, backend, rng):
    x, w, b, rm, rv = make(rng, shape, axis, np.float32)
    dy = randn(rng, shape, np.float32)
    inputs = snapshot(x, w, b, dy)
    (y, ybuf), (sm, smbuf), (sr, srbuf) = guarded(shape, np.float32), guarded((4,), np.float32), guarded(
        (4,), np.float32)
    F.batch_norm(x, w, b, rm, rv, training=True, axis=axis, out=y, save_mean=sm, save_rstd=sr, backend=backend)
    (dx, dxbuf), (dw, dwbuf), (db, dbbuf) = guarded(shape, np.float32), guarded((4,), np.float32), guarded(
        (4,), np.float32)
    F.batch_norm_backward(dy, x, w, sm, sr, axis=axis, out=dx, dweight=dw, dbias=db, backend=backend)
    assert all(margins_untouched(buf) for buf in (ybuf, smbuf, srbuf, dxbuf, dwbuf, dbbuf))
    assert unchanged(inputs, [x, w, b, dy])
    assert np.isfinite(y).all() and np.isfinite(dx).all()


def test_float16_input_with_float32_running_stats(backend, rng):
    x = off_centre(rng, (8, 3, 6, 6), np.float16, centre=2e4, spread=2e3)  # squares overflow float16
    w, b = off_centre(rng, (3,), np.float16, 1.0, 0.3), randn(rng, (3,), np.float16)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    rm64, rv64 = f64(rm, rv)
    y, sm, sr = F.batch_norm(x, w, b, rm, rv, training=True, backend=backend)
    y64, m64, r64 = R.batch_norm(*f64(x, w, b), rm64, rv64, training=True)
    assert y.dtype == np.float16 and sm.dtype == rm.dtype == np.float32 and np.isfinite(y).all()
    assert_close(y, y64, *tolerance(NORM_FORWARD, np.float16), "y")
    for name, a, e in (("save_mean", sm, m64), ("save_rstd", sr, r64), ("running_mean", rm, rm64),
                       ("running_var", rv, rv64)):
        assert_close(a, e, *tolerance(NORM_FORWARD, np.float32), name)


def test_bad_inputs_raise_before_any_write(rng):
    """RELIABILITY.md rows 8, 11, 12, 23: nothing written when a call raises."""
    x, w, b, rm, rv = make(rng, (4, 3, 5), 1, np.float32)
    out, sm, sr = np.full(x.shape, 7.0, np.float32), np.full(3, 7.0, np.float32), np.full(3, 7.0, np.float32)
    counter = np.zeros(1, np.int64)
    cases = [
        (dict(weight=w[:2]), ValueError, r"weight has shape \(2,\) but the channel count is \(3,\)"),
        (dict(bias=np.ones(4, np.float32)), ValueError, "bias has shape"),
        (dict(running_mean=rm[:2]), ValueError, "running_mean has shape"),
        (dict(running_var=np.ones(5, np.float32)), ValueError, "running_var has shape"),
        (dict(running_var=None), ValueError, "given together"),
        (dict(running_mean=rm.astype(np.float64)), TypeError, "running_mean has dtype"),
        (dict(running_var=np.ones(6, np.float32)[::2]), ValueError, "C-contiguous"),
        (dict(weight=w.astype(np.float64)), TypeError, "weight has dtype"),
        (dict(momentum=None, num_batches_tracked=None), ValueError, "needs the num_batches_tracked"),
        (dict(momentum=-0.1), ValueError, "Invalid momentum"),
        (dict(momentum=float("nan")), ValueError, "Invalid momentum"),
        (dict(momentum=10**400), ValueError, "Invalid momentum"),  # past the float range
        (dict(momentum=True), TypeError, "momentum must be a real number or None, got bool"),
        (dict(num_batches_tracked=np.zeros(1, np.float32)), TypeError, "num_batches_tracked"),
        (dict(eps=-1.0), ValueError, "Invalid eps"),
        (dict(axis=3), ValueError, "axis 3 is out of range"),
        (dict(axis=1.0), TypeError, "axis must be an int"),
        (dict(x=x[0, 0]), ValueError, "batch and a channel axis"),
        (dict(x=x.astype(np.int64)), TypeError, "x must be float16, float32 or float64"),
        (dict(out=x), ValueError, "out overlaps x"),
        (dict(out=np.empty((4, 3, 6), np.float32)), ValueError, "out has shape"),
        (dict(save_mean=rm), ValueError, "save_mean overlaps running_mean"),
        (dict(running_mean=np.broadcast_to(np.float32(0), (3,))), ValueError, "read-only"),
        (dict(backend="nope"), ValueError, "backend 'nope' cannot run"),
    ]
    for kwargs, exc, message in cases:
        args = dict(x=x, weight=w, bias=b, running_mean=rm, running_var=rv, training=True, momentum=0.1,
                    num_batches_tracked=counter, out=out, save_mean=sm, save_rstd=sr)
        args.update(kwargs)
        before = snapshot(x, w, b, rm, rv, out, sm, sr, counter)
        with pytest.raises(exc, match=message):
            F.batch_norm(**args)
        assert unchanged(before, [x, w, b, rm, rv, out, sm, sr, counter]), kwargs
    nhwc = off_centre(rng, (4, 5, 3), np.float32)  # channels_last input with a C-ordered out: refused
    with pytest.raises(ValueError, match="memory layout"):
        F.batch_norm(nhwc.transpose(0, 2, 1), training=True, out=np.empty((4, 3, 5), np.float32))
    dy = randn(rng, x.shape, np.float32)
    _, sm, sr = F.batch_norm(x, w, b, training=True)
    dx, dw, db = np.full(x.shape, 7.0, np.float32), np.full(3, 7.0, np.float32), np.full(3, 7.0, np.float32)
    for kwargs, exc, message in [(dict(save_mean=sm[:2]), ValueError, "save_mean has shape"),
                                 (dict(dy=dy[:2]), ValueError, "dy has shape"),
                                 (dict(dy=dy.astype(np.float64)), TypeError, "dy has dtype"),
                                 (dict(out=dy), ValueError, "out overlaps dy"),
                                 (dict(save_rstd=None), TypeError, "needs the save_mean and save_rstd")]:
        args = dict(dy=dy, x=x, weight=w, save_mean=sm, save_rstd=sr, out=dx, dweight=dw, dbias=db)
        args.update(kwargs)
        before = snapshot(dy, x, w, sm, sr, dx, dw, db)
        with pytest.raises(exc, match=message):
            F.batch_norm_backward(**args)
        assert unchanged(before, [dy, x, w, sm, sr, dx, dw, db]), kwargs


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(shape=st.lists(st.integers(1, 7), min_size=2, max_size=4), axis_pick=st.integers(0, 3),
                  dtype=st.sampled_from([np.float32, np.float64]), training=st.booleans(),
                  transpose=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_property_any_shape_axis_and_layout_matches_the_reference(shape, axis_pick, dtype, training, transpose,
                                                                  seed):
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    axis = axis_pick % len(shape)
    if training and np.prod(shape) // shape[axis] < 2:
        shape = (2,) + shape[1:] if axis else shape[:1] + (2,) + shape[2:]
    x, w, b, rm, rv = make(rng, shape, axis, dtype)
    if transpose:  # the same values through a non-C-contiguous view (channels-last when axis is moved last)
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, axis, -1)), -1, axis)
    rm64, rv64 = f64(rm, rv)
    y, sm, sr = F.batch_norm(x, w, b, rm, rv, training=training, axis=axis, backend="c")
    y64, m64, r64 = R.batch_norm(*f64(x, w, b), rm64, rv64, training=training, axis=axis)
    rtol, atol = tolerance(NORM_FORWARD, dtype)
    assert_close(y, y64, rtol, atol, "y")
    assert_close(rm, rm64, rtol, atol, "running_mean")
    assert_close(rv, rv64, rtol, atol, "running_var")
    dy = randn(rng, shape, dtype)
    dx, dw, db = F.batch_norm_backward(dy, x, w, sm, sr, training=training, axis=axis, backend="c")
    dx64, dw64, db64 = R.batch_norm_backward(*f64(dy, x, w), sm.astype(np.float64), sr.astype(np.float64),
                                             training=training, axis=axis)
    rtol, atol = tolerance(NORM_BACKWARD, dtype)
    # few values per channel make dx ill-conditioned (rstd can be large): compare relative to w * rstd * |dy|
    scale = 1 + np.abs(np.moveaxis(dx64, axis, -1)).max()
    assert_close(dx / scale, dx64 / scale, rtol, atol, "dx")
    assert_close(dw, dw64, rtol, atol, "dweight")
    assert_close(db, db64, rtol, atol, "dbias")


def test_bytes_moved_counts_the_minimum_traffic():
    """Each element read once per input and written once per output (training's second read of a channel comes
    from cache); per channel the affine params, running stats and saved statistics."""
    from pyopt.reference.batch_norm import bytes_moved
    n, C = 32 * 64 * 56 * 56, 64
    assert bytes_moved(n, C, 4) == 4 * (2 * n + C * (2 + 4 + 2))
    assert bytes_moved(n, C, 4, training=False) == 4 * (2 * n + C * (2 + 2 + 2))
    assert bytes_moved(n, C, 4, which="backward") == 4 * (3 * n + 5 * C)
    assert bytes_moved(n, C, 4, which="backward", training=False) == 4 * (3 * n + 5 * C)
    assert bytes_moved(n, C, 4, which="both") == bytes_moved(n, C, 4) + bytes_moved(n, C, 4, which="backward")


@PATHS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((6, 5, 7, 9), 1), ((6, 7, 9, 5), -1), ((2, 3, 20011), 1),
                                        ((6, 9, 7, 9), 1)], ids=str)
def test_both_isa_variants_give_the_same_bits(shape, axis, dtype, cache, rng):
    if "avx2" not in pyopt._c.isas():
        pytest.skip(reason="no AVX2 on this CPU")
    x, w, b, rm, rv = make(rng, shape, axis, dtype)
    dy = randn(rng, shape, dtype)

    def run():
        rm_k, rv_k = rm.copy(), rv.copy()
        y, sm, sr = F.batch_norm(x, w, b, rm_k, rv_k, training=True, axis=axis, backend="c")
        return (y, sm, sr, rm_k, rv_k) + F.batch_norm_backward(dy, x, w, sm, sr, axis=axis, backend="c")

    with cache_model(cache):
        results = both_isas(run)
    names = ("y", "save_mean", "save_rstd", "running_mean", "running_var", "dx", "dw", "db")
    for name, a, e in zip(names, results["avx2"], results["baseline"]):
        assert_bitwise(a, e, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inner", [13, 1 + 16, 50, 64 + 3])
@pytest.mark.parametrize("n_channels,cache_channels", [(9, 8), (37, 32)], ids=str)
@pytest.mark.parametrize("group_bytes", [0, 12288], ids=["by-channel", "groups"])
def test_channel_path_streams_the_same_bits_inside_guard_bands(n_channels, cache_channels, inner, group_bytes, dtype,
                                                               rng):
    """The channel path with streamed outputs (a cache model small enough that the call streams but a channel
    still fits): bitwise what its plain stores give, at several offsets from a line, with 1 and 2 threads,
    margins untouched.  The backward streams a group's runs as one stretch, so lines that hold the end of one
    run and the start of the next (or several runs of 13) take each element's own channel; the forward streams
    such a line whole from the next channel, with the previous channel's part kept for it; cache_channels
    bounds the group (a quarter of the modelled cache: 2 channels, then 8; 4 groups or more per thread) when the
    backward takes 12 KB groups; with one channel at a time each run is a stretch of its own.
    """
    shape = (4, n_channels, inner)
    x, w, b, _, _ = make(rng, shape, 1, dtype)
    dy = randn(rng, shape, dtype)
    results = {}
    previous = pyopt.get_num_threads()
    try:
        for cache in (None, cache_channels * shape[0] * inner * np.dtype(dtype).itemsize * 2):  # channel: x, dy
            for pad, threads in ((0, 1), (0, 2), (3, 2), (5, 1)):
                pyopt.set_num_threads(threads)
                y, ybuf = guarded(shape, dtype, pad)
                dx, dxbuf = guarded(shape, dtype, pad)
                with cache_model(cache), channel_groups(group_bytes):
                    _, sm, sr = F.batch_norm(x, w, b, training=True, out=y, backend="c")
                    F.batch_norm_backward(dy, x, w, sm, sr, out=dx, backend="c")
                assert margins_untouched(ybuf, pad) and margins_untouched(dxbuf, pad)
                results[cache, pad, threads] = (y, dx, sm, sr)
    finally:
        pyopt.set_num_threads(previous)
    for key, arrays in results.items():
        for k, (got, want) in enumerate(zip(arrays, results[None, 0, 1])):
            assert_bitwise(got, want, f"output {k} with cache model, pad, threads {key}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 40, 7, 9), (3, 64, 196), (2, 37, 1001)], ids=str)
def test_backward_channel_groups_change_no_bit(shape, dtype, rng):
    """The channel path's group size (csrc/runtime.c: 12 KB, or one channel on Zen 5) only reorders which
    channel is visited when: dx, dweight and dbias are bitwise the same for every group size and thread count."""
    x, w, b, _, _ = make(rng, shape, 1, dtype)
    dy = randn(rng, shape, dtype)
    _, sm, sr = F.batch_norm(x, w, b, training=True, backend="c")
    results = {}
    previous = pyopt.get_num_threads()
    try:
        for group_bytes in (0, 500, 4096, 12288, 1 << 30):  # one channel, 2+ channels ... BN_GROUP_MAX
            for threads in (1, 2):
                pyopt.set_num_threads(threads)
                with channel_groups(group_bytes):
                    results[group_bytes, threads] = F.batch_norm_backward(dy, x, w, sm, sr, backend="c")
    finally:
        pyopt.set_num_threads(previous)
    for key, arrays in results.items():
        for name, got, want in zip(("dx", "dweight", "dbias"), arrays, results[0, 1]):
            assert_bitwise(got, want, f"{name} with group bytes, threads {key}")

"""The norm ops in pyopt's run-time machinery: pyopt.track counts them with their declared bytes, and verify
mode (PYOPT_VERIFY=1) shadows every call with the float64 reference and catches a wrong kernel."""
import os
import platform
import time

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


def _outputs_of_every_op(rng, dtype, cols, pad):
    """Every norm op's outputs (dweight/dbias too), each y/dx written into a NaN-filled buffer at element offset
    ``pad`` (so row starts fall at every alignment relative to a 64-byte line), on fixed inputs; returns
    (outputs, buffers)."""
    from _norm_helpers import guarded

    x = off_centre(rng, (7, cols), dtype)
    dy, w, b = randn(rng, x.shape, dtype), off_centre(rng, (cols,), dtype, 1.0, 0.5), randn(rng, (cols,), dtype)
    outs, bufs = {}, []

    def out(shape):
        view, buf = guarded(shape, dtype, pad)
        bufs.append(buf)
        return view

    y, m, r = F.layer_norm(x, (cols,), w, b, out=out(x.shape), backend="c")
    outs["ln"] = (y, *F.layer_norm_backward(dy, x, w, m, r, (cols,), out=out(x.shape), backend="c"))
    y, r = F.rms_norm(x, (cols,), w, out=out(x.shape), backend="c")
    outs["rms"] = (y, *F.rms_norm_backward(dy, x, w, r, (cols,), out=out(x.shape), backend="c"))
    for axis in (1, -1):
        xb = x.reshape(7, cols, 1, 1) if axis == 1 else x
        rm, rv = np.zeros(cols, dtype), np.ones(cols, dtype)
        y, sm, sr = F.batch_norm(xb, w, b, rm, rv, training=True, axis=axis, out=out(xb.shape), backend="c")
        dx, dw, db = F.batch_norm_backward(dy.reshape(xb.shape), xb, w, sm, sr, axis=axis, out=out(xb.shape),
                                           backend="c")
        outs[f"bn{axis}"] = (y, dx, dw, db, rm, rv)
    return outs, bufs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cols", [1, 15, 16, 17, 64, 131])
def test_streamed_outputs_are_the_same_bits_and_stay_in_bounds(cols, dtype):
    """Calls past the cache size store their outputs with non-temporal stores, whole aligned lines only: forced
    on for every call, every output is bitwise what the cached stores give, at every offset from a line, and
    no element outside an output is written."""
    for pad in (0, 1, 3, 5, 8, 13):
        results = {}
        for threshold in (None, 0):
            previous = pyopt._c.set_cache_bytes(threshold)
            try:
                results[threshold], bufs = _outputs_of_every_op(np.random.default_rng(cols), dtype, cols, pad)
            finally:
                pyopt._c.set_cache_bytes(previous)
            for buf in bufs:
                assert np.isnan(buf[:pad]).all() and np.isnan(buf[len(buf) - pad:]).all(), (pad, threshold)
        for op, arrays in results[None].items():
            for k, (cached, streamed) in enumerate(zip(arrays, results[0][op])):
                np.testing.assert_array_equal(streamed, cached, err_msg=f"{op} output {k}, pad {pad}")


def test_cache_bytes_default_to_the_last_level_cache():
    assert pyopt._c.cache_bytes() >= 1 << 20  # a last-level cache of at least 1 MiB (32 MiB here)


@pytest.mark.parametrize("name", ["cache_bytes", "bn_group_bytes"])
def test_planning_overrides_can_be_set_and_undone(name):
    get, set_ = getattr(pyopt._c, name), getattr(pyopt._c, f"set_{name}")
    default = get()
    previous = set_(123)
    try:
        assert get() == 123
    finally:
        set_(previous)
    assert get() == default
    with pytest.raises(ValueError, match="nbytes"):
        set_(-5)


def _amd_family():
    """The CPU family /proc/cpuinfo gives for an AMD CPU (None elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            info = dict(line.split(":", 1) for line in fh.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return None
    info = {k.strip(): v.strip() for k, v in info.items()}
    return int(info["cpu family"]) if info.get("vendor_id") == "AuthenticAMD" else None


def test_bn_group_bytes_follow_the_cpu():
    """12 KB groups, but one channel at a time on AMD family 26 (Zen 5), where that measured faster."""
    if platform.machine() in ("x86_64", "AMD64") and os.path.exists("/proc/cpuinfo"):
        assert pyopt._c.bn_group_bytes() == (0 if _amd_family() == 0x1A else 12288)
    else:
        assert pyopt._c.bn_group_bytes() == 12288


def test_bn_group_bytes_reads_the_cpu_once():
    """Every BatchNorm backward asks for the group size; in a VM a cpuid traps to the hypervisor (~28 us here, 47%
    of a cache-resident call when it was asked each time), so the family is read once.  2000 asks in 20 ms."""
    lib = pyopt._c.lib
    lib.pyopt_bn_group_bytes()
    start = time.perf_counter()
    for _ in range(2000):
        lib.pyopt_bn_group_bytes()
    assert time.perf_counter() - start < 20e-3


def _at_page_offset(shape, dtype, offset_bytes, fill=np.nan):
    """A C-contiguous array starting ``offset_bytes`` past a 4 KiB page boundary (NaN guard bands around it), and
    the buffer holding it."""
    itemsize, size = np.dtype(dtype).itemsize, int(np.prod(shape))
    raw = np.empty(size * itemsize + 3 * 4096, np.uint8)
    start = (-raw.ctypes.data) % 4096 + 4096 + offset_bytes
    buf = raw[start - 4096:start + size * itemsize + 1024].view(dtype)
    buf[...] = fill
    return buf[4096 // itemsize:4096 // itemsize + size].reshape(shape), buf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dx_offset", [0, 16, 64, 128, 4032])
def test_layer_norm_backward_rows_of_whole_pages_streamed_either_way_are_the_same_bits(dtype, dx_offset):
    """With rows of whole 4 KiB pages, the backward's streamed row pairs are written from their last line down
    when dx sits just past dy or x in the page (norm_lines_down: 16-128 bytes here), upward otherwise: dx,
    dweight and dbias are bitwise those of cached stores, and nothing outside dx is written."""
    rng = np.random.default_rng(dx_offset)
    cols = 4096 // np.dtype(dtype).itemsize
    dy, _ = _at_page_offset((7, cols), dtype, 0, 0.0)
    x, _ = _at_page_offset((7, cols), dtype, 0, 0.0)
    dy[...], x[...] = randn(rng, dy.shape, dtype), off_centre(rng, x.shape, dtype)
    w = off_centre(rng, (cols,), dtype, 1.0, 0.5)
    _, mean, rstd = F.layer_norm(x, (cols,), w, None, backend="c")
    results = {}
    for threshold in (None, 0):
        dx, guard = _at_page_offset((7, cols), dtype, dx_offset)
        previous = pyopt._c.set_cache_bytes(threshold)
        try:
            results[threshold] = F.layer_norm_backward(dy, x, w, mean, rstd, (cols,), out=dx, backend="c")
        finally:
            pyopt._c.set_cache_bytes(previous)
        outside = np.concatenate([guard[:4096 // dx.itemsize], guard[4096 // dx.itemsize + dx.size:]])
        assert np.isnan(outside).all(), threshold
        assert not np.isnan(dx).any(), threshold
    for k, (cached, streamed) in enumerate(zip(results[None], results[0])):
        np.testing.assert_array_equal(streamed, cached, err_msg=f"output {k}")

"""The ``numba`` backend beyond the table-driven tests (which run it through tests/_families.BACKENDS): every
family's kernel against its reference and the C kernel bit for bit, no recompilation, thread counts, the piece
table, lazy imports, and the device-array plumbing that needs no GPU."""
import os
import subprocess
import sys

import numpy as np
import pytest
from _compare import assert_bitwise

import pyopt
from pyopt import backends, reference
from pyopt.arrays import TensorList

pytest.importorskip("numba")

from pyopt.kernels import _launch  # noqa: E402  (after the skip: this imports numba)

SIZES = [1, 7, 1023, 278011, 0, 4099]

# family -> (reference, state roles in the reference's order, hyper-parameter sets, per-tensor values by step)
FAMILY_CASES = {
    "adam": (reference.adam_step, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), [
        dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(amsgrad=True, maximize=True, weight_decay=0.05), dict(betas=(0.3, 0.5), eps=1e-3)]),
    "sgd": (reference.sgd_step, ("momentum_buffer",), [
        dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                                                        maximize=True),
        dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.1)]),
    "adagrad": (reference.adagrad_step, ("sum",), [
        dict(lr=0.1), dict(lr=0.05, lr_decay=0.05, weight_decay=0.05, eps=1e-3, maximize=True)]),
    "rmsprop": (reference.rmsprop_step, ("square_avg", "grad_avg", "momentum_buffer"), [
        dict(), dict(centered=True), dict(momentum=0.9, weight_decay=0.1),
        dict(lr=3e-3, centered=True, momentum=0.5, weight_decay=0.05, alpha=0.45, maximize=True)]),
}
DEFAULTS = {
    "adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                 decoupled_weight_decay=False),
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False),
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                    maximize=False),
}
CASES = [(family, k) for family, case in FAMILY_CASES.items() for k in range(len(case[2]))]


def used_roles(family, hparams):
    """The state roles a call with these hyper-parameters reads and writes (None for the others)."""
    roles = FAMILY_CASES[family][1]
    if family == "adam":
        return roles if hparams["amsgrad"] else roles[:2]
    if family == "sgd":
        return roles if hparams["momentum"] != 0 else ()
    if family == "rmsprop":
        return tuple(r for r in roles if r == "square_avg" or (r == "grad_avg" and hparams["centered"])
                     or (r == "momentum_buffer" and hparams["momentum"] > 0))
    return roles


def make_state(family, roles, sizes, dtype, rng):
    """State buffers in their domain: second moments positive, square_avg above grad_avg^2."""
    state = {}
    for role in roles:
        arrays = [np.abs(rng.standard_normal(n)).astype(dtype) for n in sizes]
        if role in ("exp_avg", "grad_avg", "momentum_buffer"):
            arrays = [(0.1 * rng.standard_normal(n)).astype(dtype) for n in sizes]
        if role == "square_avg":
            arrays = [a + dtype(1) for a in arrays]
        state[role] = arrays
    return state


def per_tensor_values(family, step, n, first_steps=None):
    if family in ("adam", "adagrad"):
        return {"step": np.full(n, step, dtype=np.int64)}
    if family == "sgd":
        return {"first_step": np.full(n, step == 1) if first_steps is None else first_steps}
    return {}


def reference_extra(family, per_tensor, k):
    return {key: value[k].item() for key, value in per_tensor.items()}


def run_kernel(family, backend, hparams, arrays, grads, per_tensor):
    roles = used_roles(family, hparams)
    tensors = TensorList({"param": arrays["param"], "grad": grads, **{r: arrays[r] for r in roles}})
    backends.select(family, backend)[1](tensors, hparams, per_tensor)


def copy_arrays(arrays):
    return {role: [a.copy() for a in values] for role, values in arrays.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family,config", CASES)
def test_kernel_is_bitwise_the_reference(family, config, dtype, rng):
    """Every family's numba kernel does the reference's operations in its order, compiled without FMA
    contraction: the reference's bits in float32 and float64, over several steps without re-syncing, with every
    state buffer compared."""
    ref_fn, all_roles, configs = FAMILY_CASES[family]
    hparams = dict(DEFAULTS[family], **configs[config])
    roles = used_roles(family, hparams)
    arrays = {"param": [rng.standard_normal(n).astype(dtype) for n in SIZES],
              **make_state(family, roles, SIZES, dtype, rng)}
    expected = copy_arrays(arrays)
    for step in range(1, 4):
        grads = [rng.standard_normal(n).astype(dtype) for n in SIZES]
        per_tensor = per_tensor_values(family, step, len(SIZES))
        run_kernel(family, "numba", hparams, arrays, grads, per_tensor)
        for k in range(len(SIZES)):
            state = [expected[r][k] if r in roles else None for r in all_roles]
            ref_fn(expected["param"][k], grads[k], *state, **hparams, **reference_extra(family, per_tensor, k))
    for role, values in arrays.items():
        for k, (a, b) in enumerate(zip(values, expected[role])):
            assert_bitwise(a, b, f"{role}[{k}]")


@pytest.mark.parametrize("family,config", CASES)
def test_c_equals_numba_bitwise_in_float64(family, config, rng):
    """C == numba, bit for bit, in float64 (and float32): both follow the reference's operation order."""
    if backends.available()["c"] is not None or (family, "c") not in backends._kernels:
        pytest.skip(reason=f"no C kernel for {family} in this build")
    ref_fn, _, configs = FAMILY_CASES[family]
    hparams = dict(DEFAULTS[family], **configs[config])
    roles = used_roles(family, hparams)
    for dtype in (np.float64, np.float32):
        arrays = {"param": [rng.standard_normal(n).astype(dtype) for n in SIZES],
                  **make_state(family, roles, SIZES, dtype, rng)}
        with_c = copy_arrays(arrays)
        for step in range(1, 4):
            grads = [rng.standard_normal(n).astype(dtype) for n in SIZES]
            per_tensor = per_tensor_values(family, step, len(SIZES))
            run_kernel(family, "numba", hparams, arrays, grads, per_tensor)
            run_kernel(family, "c", hparams, with_c, grads, per_tensor)
        for role, values in arrays.items():
            for k, (a, b) in enumerate(zip(values, with_c[role])):
                assert_bitwise(a, b, f"{dtype.__name__} {role}[{k}]")


def test_tensors_at_different_steps_and_mixed_first_steps(rng):
    """Per-tensor values that differ within one call (params that joined at different times)."""
    sizes = [5, 40000, 3]
    for family in ("adam", "adagrad", "sgd"):
        ref_fn, all_roles, configs = FAMILY_CASES[family]
        hparams = dict(DEFAULTS[family], **configs[-1])
        roles = used_roles(family, hparams)
        arrays = {"param": [rng.standard_normal(n) for n in sizes], **make_state(family, roles, sizes, np.float64,
                                                                                 rng)}
        expected = copy_arrays(arrays)
        grads = [rng.standard_normal(n) for n in sizes]
        if family == "sgd":
            per_tensor = {"first_step": np.array([True, False, True])}
        else:
            per_tensor = {"step": np.array([3, 1, 7], dtype=np.int64)}
        run_kernel(family, "numba", hparams, arrays, grads, per_tensor)
        for k in range(len(sizes)):
            state = [expected[r][k] if r in roles else None for r in all_roles]
            ref_fn(expected["param"][k], grads[k], *state, **hparams, **reference_extra(family, per_tensor, k))
        for role, values in arrays.items():
            for k, (a, b) in enumerate(zip(values, expected[role])):
                assert_bitwise(a, b, f"{family} {role}[{k}]")


def _compiled(module):
    return {key: len(fn.signatures) for key, fn in module.CPU.compiled.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_recompilation_on_the_second_call(dtype, rng):
    """The second step, and a second optimizer with the same flags and dtype, reuse the compiled driver: no new
    dispatcher and no new signature (a recompile would cost about a second per step)."""
    from pyopt.kernels import adam

    params = [rng.standard_normal(n).astype(dtype) for n in (10, 2**16 + 1)]
    grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    opt = pyopt.optim.Adam(params, backend="numba", weight_decay=0.1)
    opt.step(grads)
    before = _compiled(adam)
    # one specialisation per dtype at most: the drivers take tables and scalars, never the caller's arrays, so
    # read-only grads or other array flags cannot multiply them
    assert before and all(count <= 2 for count in before.values())
    opt.step(grads)
    opt.step([g.copy() for g in grads])  # new grad objects: the plan is rebuilt, the driver is not
    again = pyopt.optim.Adam([p.copy() for p in params], backend="numba", weight_decay=0.1)
    again.step(grads)
    assert _compiled(adam) == before


def test_one_and_two_threads_give_the_same_bits(rng):
    import numba

    params = [rng.standard_normal(n).astype(np.float32) for n in (1, 3 * 2**15 + 5, 2**18 + 1, 0)]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(3)]
    results = []
    threads = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            opt = pyopt.optim.Adam([p.copy() for p in params], backend="numba", amsgrad=True, weight_decay=0.1)
            for g in grads:
                opt.step(g)
            results.append([p for grp in opt.param_groups for p in grp["params"]])
    finally:
        numba.set_num_threads(threads)
    for k, (a, b) in enumerate(zip(*results)):
        assert_bitwise(a, b, f"params[{k}]")


@pytest.mark.parametrize("numel", [[0], [1], [5, 0, 3], [2**16, 2**16 + 1, 7], [2**31 + 5, 3, 2**33 + 17]])
def test_piece_table_covers_every_element_once(numel):
    """Pieces never cross a tensor, never exceed the piece size, and tile each tensor exactly, past 2^31 too."""
    piece = 1 << 16
    table = _launch.piece_table(numel, piece)
    assert table.dtype == np.int64
    for t, n in enumerate(numel):
        rows = table[table[:, 0] == t]
        assert (rows[:, 2] - rows[:, 1] <= piece).all() and (rows[:, 2] > rows[:, 1]).all()
        assert rows[:, 1].tolist() == sorted(rows[:, 1].tolist())
        assert int((rows[:, 2] - rows[:, 1]).sum()) == n
        if n:
            assert rows[0, 1] == 0 and rows[-1, 2] == n and (rows[1:, 1] == rows[:-1, 2]).all()


def test_cpu_drivers_are_compiled_without_fastmath():
    """fastmath would let LLVM contract FMAs and reassociate: the bitwise tests above rely on it being off."""
    assert _launch.CPU_OPTIONS["fastmath"] is False
    assert _launch.CPU_OPTIONS["error_model"] == "numpy"
    assert _launch.CPU_OPTIONS["cache"] is True


def _python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=environment, check=True).stdout.strip()


def test_import_pyopt_does_not_import_numba():
    """numba costs about 0.7 s to import and numba-cuda 0.8 s more: pyopt loads them with the first kernel."""
    assert _python("import sys, pyopt; print('numba' in sys.modules)") == "False"


def test_available_explains_why_cuda_cannot_run():
    """Without a GPU (CI), available() says why; with one, cuda is available.  Never raises."""
    reason = _python("import pyopt; print(repr(pyopt.backends.available()['cuda']))")
    assert reason == "None" or any(word in reason for word in ("driver", "numba-cuda", "numba.cuda", "GPU")), reason


def test_available_reasons_for_missing_packages(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    for missing, expected in (("numba_cuda", "numba-cuda is not installed"), ("numba", "numba is not installed")):
        monkeypatch.setattr(backends, "_reasons", {})
        monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, _m=missing: None if name == _m else real(name, *a))
        assert expected in backends.available()["cuda"]
    monkeypatch.setattr(backends, "_reasons", {})


class HostBackedDeviceArray:
    """A stand-in for a CUDA array (``__cuda_array_interface__`` over host memory), to test the API layer's
    handling of device arrays on a machine without a GPU.  Kernels are never launched on it."""

    def __init__(self, array, readonly=False, device=None):
        self.array = array
        self.readonly = readonly
        self.device = device

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.array.shape, "typestr": self.array.dtype.str, "version": 3,
                "data": (self.array.ctypes.data, self.readonly),
                "strides": None if self.array.flags.c_contiguous else self.array.strides}


def test_device_arrays_are_described_without_copies():
    from pyopt import arrays

    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    info = arrays.device_array(HostBackedDeviceArray(host))
    assert info.shape == (3, 4) and info.dtype == np.float32 and info.ptr == host.ctypes.data
    assert info.c_contiguous and info.size == 12 and info.nbytes == 48
    assert not arrays.device_array(HostBackedDeviceArray(host[:, ::2])).c_contiguous
    assert arrays.device_array(host) is None and arrays.device_array([1.0]) is None
    with pytest.raises(ValueError, match="C-contiguous"):
        arrays.check_float_array(HostBackedDeviceArray(host[:, ::2]), "params[0]")
    with pytest.raises(ValueError, match="read-only"):
        arrays.check_float_array(HostBackedDeviceArray(host, readonly=True), "params[0]", writable=True)
    with pytest.raises(TypeError, match="float32 or float64"):
        arrays.check_float_array(HostBackedDeviceArray(host.astype(np.int32)), "params[0]")
    with pytest.raises(ValueError, match="is on cpu but params"):
        arrays.check_like(host, HostBackedDeviceArray(host), "grads[0]", "params[0]")
    with pytest.raises(ValueError, match="shape"):
        arrays.check_like(HostBackedDeviceArray(host[:2]), HostBackedDeviceArray(host), "grads[0]", "params[0]")
    overlap = arrays.overlapping_pair([HostBackedDeviceArray(host), None, HostBackedDeviceArray(host[1:])])
    assert overlap == (0, 2)


def test_device_arrays_select_cuda_or_explain(monkeypatch):
    """Device arrays go to the cuda backend; a host backend named for them, or cuda for host arrays, is refused
    before anything is written."""
    monkeypatch.delenv("PYOPT_BACKEND", raising=False)
    host = np.ones(8, np.float32)
    p, g = HostBackedDeviceArray(host.copy()), HostBackedDeviceArray(host.copy())
    with pytest.raises(ValueError, match="CUDA device arrays"):
        pyopt.functional.adam_step(p, g, HostBackedDeviceArray(np.zeros(8, np.float32)),
                                   HostBackedDeviceArray(np.zeros(8, np.float32)), step=1, backend="c")
    with pytest.raises(ValueError, match="host"):
        pyopt.functional.adam_step(host.copy(), host.copy(), np.zeros(8, np.float32), np.zeros(8, np.float32),
                                   step=1, backend="cuda")
    name, _ = backends.select("adam", on_device=False)
    assert name == "c"
    monkeypatch.setenv("PYOPT_BACKEND", "numba")  # names a host backend: device arrays still go to cuda
    if backends.available()["cuda"] is not None:
        with pytest.raises(ValueError, match="cuda backend cannot run"):
            backends.select("adam", on_device=True)
    assert np.array_equal(p.array, host)


def test_numba_backend_is_the_fallback_without_c(monkeypatch, caplog):
    monkeypatch.delenv("PYOPT_BACKEND", raising=False)
    monkeypatch.setattr(backends._c, "IMPORT_ERROR", "pretend the extension is missing")
    monkeypatch.setattr(backends, "_logged_fallbacks", set())
    name, _ = backends.select("adam")
    assert name == "numba"
    assert "numba" in caplog.text


# ---- the norm kernels (the table-driven tests in test_layer_norm.py etc. run numba against the references) ----

def _run_norms(rng_values, dtype):
    """Every norm op on the numba backend, forward and backward, over shapes with several row blocks, several
    BatchNorm reduction items, inner slices and channels-last rows, BatchNorm on both of its paths; all outputs, in
    order."""
    F = pyopt.functional
    x, w, b, dy = rng_values["ln"]
    outputs = []
    y, mean, rstd = F.layer_norm(x, x.shape[1:], w, b, backend="numba")
    outputs += [y, mean, rstd, *F.layer_norm_backward(dy, x, w, mean, rstd, x.shape[1:], backend="numba")]
    y, rstd = F.rms_norm(x, x.shape[1:], w, backend="numba")
    outputs += [y, rstd, *F.rms_norm_backward(dy, x, w, rstd, x.shape[1:], backend="numba")]
    for cache in (None, 0):  # planar training shapes take the channel path, then (a cache of 0) the tiled one
        previous = pyopt._c.set_cache_bytes(cache)
        try:
            for xb, dyb, axis in rng_values["bn"]:
                C = xb.shape[axis]
                rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
                y, sm, sr = F.batch_norm(xb, None, None, rm, rv, training=True, axis=axis, backend="numba")
                outputs += [y, sm, sr, rm, rv,
                            *F.batch_norm_backward(dyb, xb, None, sm, sr, axis=axis, backend="numba"),
                            *F.batch_norm_backward(dyb, xb, None, sm, sr, training=False, axis=axis,
                                                   backend="numba")]
        finally:
            pyopt._c.set_cache_bytes(previous)
    return outputs


def _norm_inputs(rng, dtype):
    shape = (300, 1023)
    ln = (rng.standard_normal(shape).astype(dtype) + dtype(3), rng.standard_normal(shape[1]).astype(dtype),
          rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape).astype(dtype))
    bn = [(rng.standard_normal(s).astype(dtype) + dtype(3), rng.standard_normal(s).astype(dtype), axis)
          for s, axis in (((16, 8, 30, 30), 1), ((16, 30, 30, 8), -1), ((4, 3, 40000), 1))]
    return {"ln": ln, "bn": bn}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norms_give_the_same_bits_for_1_and_2_threads_and_run_after_run(dtype, rng):
    """The reductions' order is fixed by the shape (row blocks, BatchNorm items, lanes), not by the threads."""
    import numba

    values = _norm_inputs(rng, dtype)
    threads = numba.get_num_threads()
    results = []
    try:
        for n in (1, 2, 2, 1):
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            results.append(_run_norms(values, dtype))
    finally:
        numba.set_num_threads(threads)
    for other in results[1:]:
        for k, (a, e) in enumerate(zip(other, results[0])):
            assert_bitwise(a, e, f"output {k}")


def test_cpu_drivers_refuse_a_closure_that_would_miss_the_disk_cache():
    """numba keys a cached closure by the pickle of its cells; a jitted function in a cell pickles differently in
    every process, so each new process would recompile (13-15 s for one LayerNorm driver before this check)."""
    import numba

    helper = numba.njit(lambda v: v + 1)

    def closes_over_a_dispatcher(loop, stamp, flag):
        def driver(a):
            for k in loop(a.shape[0]):
                a[k] = helper(a[k]) if flag else a[k]
        return driver

    def closes_over_constants(loop, stamp, flag):
        def driver(a):
            _ = stamp
            for k in loop(a.shape[0]):
                a[k] = a[k] + 1.0 if flag else a[k]
        return driver

    with pytest.raises(TypeError, match="helper"):
        _launch.CpuDrivers(closes_over_a_dispatcher).get((True,), 1)
    a = np.zeros(3)
    _launch.CpuDrivers(closes_over_constants).get((True,), 3)(a)
    assert a.tolist() == [1.0, 1.0, 1.0]


def test_norms_do_not_recompile_on_the_second_call(rng):
    """A second call with new arrays of the same dtypes and flags reuses every compiled norm driver: no new
    dispatcher, no new signature."""
    from pyopt.kernels import batch_norm, layer_norm, rms_norm

    def compiled():
        return {(m.__name__, part, key): len(fn.signatures) for m in (layer_norm, rms_norm, batch_norm)
                for part in ("CPU_FORWARD", "CPU_BACKWARD") for key, fn in getattr(m, part).compiled.items()}

    _run_norms(_norm_inputs(rng, np.float32), np.float32)
    before = compiled()
    # at most one signature per dtype (float32, float64: other tests of the process may have compiled float64)
    assert before and all(count <= 2 for count in before.values()), before
    _run_norms(_norm_inputs(rng, np.float32), np.float32)
    assert compiled() == before


@pytest.mark.parametrize("cols", [131, 511, 515, 1031])
def test_norm_rows_stream_the_same_bits_inside_guard_bands(cols):
    """LayerNorm and RMSNorm rows with a cache model of 0 bytes (every call streams, but only rows of
    STREAM_MIN_ROW_BYTES or more: 515 and 1031 float32 values here): bitwise what the plain stores give, at
    several offsets from a line, and nothing outside the outputs written."""
    from _norm_helpers import guarded, margins_untouched, off_centre, randn

    F = pyopt.functional
    rng = np.random.default_rng(cols)
    x, dy = off_centre(rng, (9, cols), np.float32), randn(rng, (9, cols), np.float32)
    w, b = off_centre(rng, (cols,), np.float32, 1.0, 0.5), randn(rng, (cols,), np.float32)
    results = {}
    for cache in (None, 0):
        for pad in (0, 3, 5):
            bufs, outs = [], []
            for _ in range(4):
                view, buf = guarded(x.shape, np.float32, pad)
                bufs.append(buf)
                outs.append(view)
            previous = pyopt._c.set_cache_bytes(cache)
            try:
                _, mean, rstd = F.layer_norm(x, (cols,), w, b, out=outs[0], backend="numba")
                F.layer_norm_backward(dy, x, w, mean, rstd, (cols,), out=outs[1], backend="numba")
                _, r = F.rms_norm(x, (cols,), w, out=outs[2], backend="numba")
                F.rms_norm_backward(dy, x, w, r, (cols,), out=outs[3], backend="numba")
            finally:
                pyopt._c.set_cache_bytes(previous)
            assert all(margins_untouched(buf, pad) for buf in bufs), (cache, pad)
            results[cache, pad] = outs
    for key, outs in results.items():
        for k, (got, want) in enumerate(zip(outs, results[None, 0])):
            assert_bitwise(got, want, f"output {k}, cache model {key[0]}, pad {key[1]}")


def test_short_rows_are_stored_plainly_even_in_a_call_past_the_cache():
    from pyopt.kernels._norm_stream import STREAM_MIN_ROW_BYTES, stream_rows

    huge = 1 << 40
    assert stream_rows(huge, STREAM_MIN_ROW_BYTES) and not stream_rows(huge, STREAM_MIN_ROW_BYTES - 4)
    assert not stream_rows(1024, 1 << 20)  # a call that fits in the cache never streams


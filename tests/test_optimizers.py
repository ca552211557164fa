"""Table-driven tests over every optimizer family x backend (numpy, c baseline, c AVX2) x dtype x mode flags."""
import copy
import multiprocessing
import os

import numpy as np
import pytest
from _backends import backend_fixture
from _compare import assert_bitwise, assert_close
from _families import BACKENDS, FAMILIES
from _torch import run_against_torch
from _tolerances import OPTIMIZER, tolerance

import pyopt
from pyopt import _c

SIZES = [1, 7, 1023, 278011, 0]  # the empty tensor last: PyTorch #100701
DTYPES = [np.float32, np.float64]
CASES = [(name, k) for name, fam in FAMILIES.items() for k in range(len(fam.configs))]


backend = backend_fixture(BACKENDS)
fast_backend = backend_fixture([b for b in BACKENDS if b[0] != "numpy"])


def make_params(rng, dtype, sizes=SIZES):
    return [rng.standard_normal(n).astype(dtype) for n in sizes]


def make_grads(rng, params, scale=1.0):
    return [(scale * rng.standard_normal(p.shape)).astype(p.dtype) for p in params]


def params_of(opt):
    return [p for g in opt.param_groups for p in g["params"]]


def to_float64_state(state_dict):
    sd = copy.deepcopy(state_dict)
    for entry in sd["state"].values():
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                entry[key] = value.astype(np.float64)
    return sd


def state_arrays(opt):
    return {(i, role): buf for i, bufs in opt.state.items() for role, buf in bufs.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family,config", CASES)
def test_matches_float64_reference_each_step(family, config, dtype, backend, rng):
    """After each of 7 steps the fast result is within the tolerance table of a float64 reference step taken
    from the same state (re-synced every step); every state buffer is compared, not just the params."""
    fam = FAMILIES[family]
    kwargs = fam.configs[config]
    opt = fam.cls(make_params(rng, dtype), backend=backend, **kwargs)
    rtol, atol = tolerance(OPTIMIZER, dtype)
    for step in range(7):
        grads = make_grads(rng, params_of(opt))
        ref = fam.cls([p.astype(np.float64) for p in params_of(opt)], backend="numpy", **kwargs)
        ref.load_state_dict(to_float64_state(opt.state_dict()))
        ref.step([g.astype(np.float64) for g in grads])
        opt.step(grads)
        for k, (p, r) in enumerate(zip(params_of(opt), params_of(ref))):
            assert p.dtype == dtype
            assert_close(p, r, rtol, atol, f"step {step + 1} params[{k}]")
        ref_state = state_arrays(ref)
        assert ref_state.keys() == state_arrays(opt).keys()
        for key, buf in state_arrays(opt).items():
            assert buf.dtype == dtype
            assert_close(buf, ref_state[key], rtol, atol, f"step {step + 1} state{key}")
        assert opt.state_dict()["state"].keys() == ref.state_dict()["state"].keys()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family,config", CASES)
def test_c_is_bitwise_the_reference_in_the_same_dtype(family, config, dtype, fast_backend, rng):
    """The C kernels do the reference's operations in the reference's order without FMA contraction, so both
    ISA variants give the NumPy reference's bits in float32 and float64, over many steps without re-syncing."""
    backend = fast_backend
    fam = FAMILIES[family]
    kwargs = fam.configs[config]
    params = make_params(rng, dtype)
    fast = fam.cls([p.copy() for p in params], backend=backend, **kwargs)
    ref = fam.cls([p.copy() for p in params], backend="numpy", **kwargs)
    for _ in range(7):
        grads = make_grads(rng, params)
        fast.step(grads)
        ref.step(grads)
    for k, (a, b) in enumerate(zip(params_of(fast), params_of(ref))):
        assert_bitwise(a, b, f"params[{k}]")
    ref_state = state_arrays(ref)
    for key, buf in state_arrays(fast).items():
        assert_bitwise(buf, ref_state[key], f"state{key}")


@pytest.mark.parametrize("size", [0, 1, 7, 1023, 278011, 2**16 + 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_single_tensor_sizes(family, size, backend, rng):
    fam = FAMILIES[family]
    params = make_params(rng, np.float32, [size])
    fast = fam.cls([p.copy() for p in params], backend=backend, **fam.configs[-1])
    ref = fam.cls([p.astype(np.float64) for p in params], backend="numpy", **fam.configs[-1])
    for _ in range(3):
        grads = make_grads(rng, params)
        fast.step(grads)
        ref.step([g.astype(np.float64) for g in grads])
    assert_close(params_of(fast)[0], params_of(ref)[0], 1e-5, 1e-5, "param")


@pytest.mark.parametrize("family,config", CASES)
def test_zero_grad_leaves_params_bit_identical(family, config, backend, rng):
    fam = FAMILIES[family]
    kwargs = dict(fam.configs[config], weight_decay=0.0)
    params = make_params(rng, np.float32)
    opt = fam.cls([p.copy() for p in params], backend=backend, **kwargs)
    for _ in range(3):
        opt.step([np.zeros_like(p) for p in params])
    for k, (p, q) in enumerate(zip(params_of(opt), params)):
        assert_bitwise(p, q, f"params[{k}]")


@pytest.mark.parametrize("family,config", CASES)
def test_state_dict_round_trip_continues_bit_identically(family, config, backend, rng):
    fam = FAMILIES[family]
    kwargs = fam.configs[config]
    params = make_params(rng, np.float32)
    grads = [make_grads(rng, params) for _ in range(10)]
    straight = fam.cls([p.copy() for p in params], backend=backend, **kwargs)
    for g in grads:
        straight.step(g)
    first = fam.cls([p.copy() for p in params], backend=backend, **kwargs)
    for g in grads[:5]:
        first.step(g)
    saved = copy.deepcopy(first.state_dict())
    saved_before_load = copy.deepcopy(saved)
    resumed = fam.cls([p.copy() for p in params_of(first)], backend=backend, **kwargs)
    resumed.load_state_dict(saved)
    for g in grads[5:]:
        resumed.step(g)
    for k, (a, b) in enumerate(zip(params_of(resumed), params_of(straight))):
        assert_bitwise(a, b, f"params[{k}]")
    # load_state_dict copied: the dict it was given is unchanged
    for index, entry in saved_before_load["state"].items():
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                assert_bitwise(saved["state"][index][key], value, f"saved state[{index}][{key}]")


@pytest.mark.parametrize("family", FAMILIES)
def test_one_and_two_threads_give_the_same_bits(family, rng):
    fam = FAMILIES[family]
    params = make_params(rng, np.float32, [1, 3 * 2**15 + 5, 2**18 + 1, 0])
    grads = [make_grads(rng, params) for _ in range(3)]
    results = []
    threads = pyopt.get_num_threads()
    try:
        for n in (1, 2):
            pyopt.set_num_threads(n)
            opt = fam.cls([p.copy() for p in params], backend="c", **fam.configs[-1])
            for g in grads:
                opt.step(g)
            results.append(params_of(opt))
    finally:
        pyopt.set_num_threads(threads)
    for k, (a, b) in enumerate(zip(*results)):
        assert_bitwise(a, b, f"params[{k}]")


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_tensor_call_equals_single_tensor_calls(family, backend, rng):
    fam = FAMILIES[family]
    params = make_params(rng, np.float64, [5, 2**15 + 9, 1, 40000])
    grads = [make_grads(rng, params) for _ in range(3)]
    together = fam.cls([p.copy() for p in params], backend=backend, **fam.configs[-1])
    apart = [fam.cls([p.copy()], backend=backend, **fam.configs[-1]) for p in params]
    for g in grads:
        together.step(g)
        for opt, gk in zip(apart, g):
            opt.step([gk])
    for k, opt in enumerate(apart):
        assert_bitwise(params_of(together)[k], params_of(opt)[0], f"params[{k}]")


@pytest.mark.parametrize("family", FAMILIES)
def test_none_grad_skips_its_param_and_creates_no_state(family, backend, rng):
    fam = FAMILIES[family]
    params = make_params(rng, np.float32, [10, 20, 30])
    opt = fam.cls([p.copy() for p in params], backend=backend, **fam.configs[0])
    grads = make_grads(rng, params)
    opt.step([grads[0], None, grads[2]])
    assert_bitwise(params_of(opt)[1], params[1], "skipped param")
    assert 1 not in opt.state and 0 in opt.state and 2 in opt.state
    opt.step([None, None, None])
    assert 1 not in opt.state


@pytest.mark.parametrize("family", FAMILIES)
def test_guard_bands_and_misaligned_views(family, backend, rng):
    """Params living inside NaN-filled buffers at an odd offset (misaligned for any vector width): the margins
    stay NaN and the result equals an aligned run bit for bit."""
    fam = FAMILIES[family]
    n, pad = 1029, 5
    buffers = [np.full(n + 2 * pad + 1, np.nan, dtype=np.float32) for _ in range(2)]
    views = [b[pad + 1:pad + 1 + n] for b in buffers]
    values = make_params(rng, np.float32, [n, n])
    for v, x in zip(views, values):
        v[...] = x
    guarded = fam.cls(views, backend=backend, **fam.configs[-1])
    aligned = fam.cls([x.copy() for x in values], backend=backend, **fam.configs[-1])
    for _ in range(3):
        g = make_grads(rng, values)
        guarded.step(g)
        aligned.step(g)
    for b, v, a in zip(buffers, views, params_of(aligned)):
        assert np.isnan(b[:pad + 1]).all() and np.isnan(b[pad + 1 + n:]).all()
        assert_bitwise(v, a, "misaligned view")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock"])
def test_converges(family, problem, backend):
    fam = FAMILIES[family]
    if problem == "quadratic":
        scales = np.array([1.0, 3.0, 10.0])
        x = np.array([1.5, -2.0, 0.7])

        def grad(x):
            return scales * x

        def target_reached(x):
            return np.linalg.norm(x) < 1e-2
        steps = 3000
    else:
        x = np.array([-1.2, 1.0])

        def grad(x):
            return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])

        def target_reached(x):
            return np.linalg.norm(x - 1.0) < 5e-2
        steps = 20000
    opt = fam.cls([x], backend=backend, **fam.converge)
    for _ in range(steps):
        opt.step([grad(x)])
        if target_reached(x):
            break
    assert target_reached(x), f"{family} ended at {x} after {steps} steps"


def test_fork_after_openmp_does_not_hang(rng):
    """A child forked after a parallel region must be able to run one (at-fork handler releases the pool)."""
    params = make_params(rng, np.float32, [2**20])
    opt = pyopt.optim.Adam(params, backend="c")
    opt.step(make_grads(rng, params))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_child_step, (2**20,))
        assert result.get(timeout=60) == 2**20
    opt.step(make_grads(rng, params))  # and the parent keeps working


def _child_step(n):
    p = np.ones(n, np.float32)
    pyopt.optim.Adam([p], backend="c").step([np.ones(n, np.float32)])
    return int(np.count_nonzero(p < 1))


def test_backend_env_variable_and_explicit_backend(monkeypatch):
    p = np.ones(4, np.float32)
    monkeypatch.setenv("PYOPT_BACKEND", "numpy")
    name, _ = pyopt.backends.select("adam")
    assert name == "numpy"
    monkeypatch.setenv("PYOPT_BACKEND", "nonesuch")
    with pytest.raises(ValueError, match="nonesuch"):
        pyopt.optim.Adam([p]).step([p.copy()])
    monkeypatch.delenv("PYOPT_BACKEND")
    assert pyopt.backends.select("adam")[0] == "c"
    assert pyopt.backends.available()["c"] is None
    assert os.environ.get("PYOPT_BACKEND") is None


@pytest.mark.parametrize("total", [0, 1, 17, 2**31 - 1, 2**31 + 5, 3 * 2**32 + 12345, 2**62 + 3])
@pytest.mark.parametrize("n_threads", [1, 2, 3, 7, 64])
def test_thread_slices_cover_huge_index_spaces_exactly_once(total, n_threads):
    """Past 2^31 elements the split uses 64-bit arithmetic (DeepSpeed #7640, apex #1654 failed silently there).
    Allocating such tensors takes more memory than CI has; the split is the only place an index is computed
    from sizes, and each kernel loops over int64_t indices within its slice."""
    lo, hi = _c.ffi.new("int64_t *"), _c.ffi.new("int64_t *")
    expected_start = 0
    for tid in range(n_threads):
        _c.lib.pyopt_thread_slice(total, n_threads, tid, lo, hi)
        assert lo[0] == expected_start and lo[0] <= hi[0] <= total
        assert lo[0] % 16 == 0 or lo[0] == total
        expected_start = hi[0]
    assert expected_start == total


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_non_finite_grads_propagate_bitwise_like_the_reference(family, maximize, fast_backend, rng):
    """NaN and inf in a grad are not zeroed or skipped (RELIABILITY 17): they flow through the rule as in the
    reference: NaN exactly where the reference has NaN, every other value (infinities included) bitwise.  A NaN's
    sign bit is not compared: compilers may commute an addition, and x86 propagates the first operand's NaN."""
    fam = FAMILIES[family]
    kwargs = dict(fam.configs[-1], maximize=maximize)
    params = make_params(rng, np.float32, [37, 1029])
    fast = fam.cls([p.copy() for p in params], backend=fast_backend, **kwargs)
    ref = fam.cls([p.copy() for p in params], backend="numpy", **kwargs)
    for _ in range(2):
        grads = make_grads(rng, params)
        for g in grads:
            g[::7] = np.nan
            g[3::11] = np.inf
            g[5::13] = -np.inf
        with np.errstate(invalid="ignore", over="ignore"):
            fast.step(grads)
            ref.step(grads)
    for k, (a, b) in enumerate(zip(params_of(fast), params_of(ref))):
        nan = np.isnan(b)
        assert nan.any() and np.array_equal(np.isnan(a), nan), f"params[{k}]: NaN positions differ"
        assert_bitwise(a[~nan], b[~nan], f"params[{k}] (non-NaN)")


@pytest.mark.parametrize("family", [f for f in FAMILIES if FAMILIES[f].cls.spec.has_step])
def test_step_counts_survive_plan_changes_and_mixed_steps(family, backend, rng):
    """Per-param step counts are exact whether a group's params step together (one counter for the plan) or
    not (None grads), across plan rebuilds, state_dict and add_param_group; and the results equal the
    reference backend's, so the per-tensor bias corrections followed the right counts."""
    fam = FAMILIES[family]
    params = make_params(rng, np.float64, [5, 9, 3])
    fast = fam.cls([p.copy() for p in params], backend=backend, **fam.configs[-1])
    ref = fam.cls([p.copy() for p in params], backend="numpy", **fam.configs[-1])
    pattern = [(1, 1, 1), (1, 0, 1), (1, 1, 1), (1, 1, 1), (0, 0, 1), (1, 1, 1)]
    for mask in pattern:
        grads = make_grads(rng, params)
        chosen = [g if m else None for g, m in zip(grads, mask)]
        fast.step(chosen)
        ref.step(chosen)
    counts = [sum(m[k] for m in pattern) for k in range(3)]
    assert [fast.state_dict()["state"][k]["step"] for k in range(3)] == counts
    for a, b in zip(params_of(fast), params_of(ref)):
        assert_bitwise(a, b)
    fast.add_param_group({"params": [np.ones(4)]})
    fast.step(make_grads(rng, params) + [np.ones(4)])
    assert [fast.state_dict()["state"][k]["step"] for k in range(4)] == [c + 1 for c in counts] + [1]


@pytest.mark.parametrize("family,config", CASES)
def test_reference_matches_torch_in_float64(family, config, rng):
    """The float64 reference follows torch.optim's formulas: every param and state buffer, 7 steps."""
    run_against_torch(family, FAMILIES[family].configs[config], rng)


@pytest.mark.parametrize("family", FAMILIES)
def test_c_matches_torch_in_float64(family, rng):
    run_against_torch(family, FAMILIES[family].configs[-1], rng, backend="c")

"""pyopt.track(), verify mode and `pyopt check`: correctness and throughput made visible."""
import threading

import numpy as np
import pytest

import pyopt
from pyopt import backends, check, cli
from pyopt import functional as F
from pyopt.check import VerifyError


def test_track_counts_calls_elements_and_bytes_exactly(rng):
    sizes = [1000, 17, 0]
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [np.ones(n, np.float32) for n in sizes]
    adam = pyopt.optim.Adam(params)
    sgd = pyopt.optim.SGD([p.astype(np.float64) for p in params], momentum=0.9)
    with pyopt.track(probe=False) as t:
        for _ in range(3):
            adam.step(grads)
        sgd.step([g.astype(np.float64) for g in grads])  # first momentum step: b written, not read
        sgd.step([g.astype(np.float64) for g in grads])
        F.adamw_step(params[0], grads[0], np.zeros(1000, np.float32), np.zeros(1000, np.float32), step=1)
    counts = t.as_dict()
    assert counts[("adam", "c", "float32")]["calls"] == 4
    assert counts[("adam", "c", "float32")]["elements"] == 3 * 1017 + 1000
    assert counts[("adam", "c", "float32")]["bytes"] == 3 * 28 * 1017 + 28 * 1000
    assert counts[("sgd", "c", "float64")]["bytes"] == 8 * 1017 * 4 + 8 * 1017 * 5
    assert counts[("sgd", "c", "float64")]["seconds"] > 0
    assert counts[("adam", "c", "float32")]["pct_probe"] is None
    assert "adam" in t.report() and "float64" in t.report()


def test_track_is_off_outside_the_block_and_nested_trackers_both_count(rng):
    p = rng.standard_normal(64).astype(np.float32)
    opt = pyopt.optim.Adagrad([p])
    with pyopt.track(probe=False) as outer:
        opt.step([np.ones(64, np.float32)])
        with pyopt.track(probe=False) as inner:
            opt.step([np.ones(64, np.float32)])
    opt.step([np.ones(64, np.float32)])
    assert outer.as_dict()[("adagrad", "c", "float32")]["calls"] == 2
    assert inner.as_dict()[("adagrad", "c", "float32")]["calls"] == 1


def test_track_counters_are_thread_safe(rng):
    opts = [pyopt.optim.SGD([rng.standard_normal(256).astype(np.float32)], lr=0.01) for _ in range(4)]
    grads = [np.ones(256, np.float32)]

    def work(opt):
        for _ in range(200):
            opt.step(grads)

    with pyopt.track(probe=False) as t:
        threads = [threading.Thread(target=work, args=(o,)) for o in opts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    row = t.as_dict()[("sgd", "c", "float32")]
    assert row["calls"] == 800 and row["bytes"] == 800 * 256 * 12


def test_track_reports_a_share_of_the_bandwidth_probe(rng):
    p = rng.standard_normal(2**16).astype(np.float32)
    opt = pyopt.optim.Adam([p])
    with pyopt.track() as t:
        opt.step([np.ones_like(p)])
    row = t.as_dict()[("adam", "c", "float32")]
    assert row["pct_probe"] > 0 and np.isfinite(row["gb_s"])


def _corrupted(kernel):
    def wrong(tensors, hparams, per_tensor):
        kernel(tensors, hparams, per_tensor)
        victim = next(p for p in tensors["param"] if p.size > 3)
        victim.reshape(-1)[3] += 1e-3

    return wrong


@pytest.fixture
def corrupted_adam(monkeypatch):
    good = backends._kernels[("adam", "c")]
    monkeypatch.setitem(backends._kernels, ("adam", "c"), _corrupted(good))


def test_verify_mode_is_silent_on_the_real_kernels(rng):
    for cls in (pyopt.optim.Adam, pyopt.optim.SGD, pyopt.optim.Adagrad, pyopt.optim.RMSprop, pyopt.optim.AdamW):
        params = [rng.standard_normal(n).astype(np.float32) for n in (5, 1029)]
        opt = cls(params, verify=True)
        for _ in range(3):
            opt.step([rng.standard_normal(p.shape).astype(np.float32) for p in params])


def test_verify_mode_raises_on_a_corrupted_kernel_naming_op_backend_index_and_values(rng, corrupted_adam):
    params = [rng.standard_normal(40).astype(np.float32)]
    opt = pyopt.optim.Adam(params, verify=True)
    with pytest.raises(VerifyError, match=r"adam on backend 'c' \(float32\): param of tensor 0 .* index \(3,\): "
                                          r"got .*, reference .*"):
        opt.step([np.ones(40, np.float32)])
    pyopt.optim.Adam([params[0].copy()]).step([np.ones(40, np.float32)])  # without verify nothing is checked


def test_pyopt_verify_environment_variable_turns_verify_on(rng, corrupted_adam, monkeypatch):
    monkeypatch.setenv("PYOPT_VERIFY", "1")
    p = rng.standard_normal(10).astype(np.float32)
    with pytest.raises(VerifyError):
        pyopt.optim.Adam([p]).step([np.ones(10, np.float32)])
    with pytest.raises(VerifyError):
        F.adam_step(p, np.ones(10, np.float32), np.zeros(10, np.float32), np.zeros(10, np.float32), step=1)


def test_pyopt_check_exits_0_on_the_real_kernels(capsys):
    assert cli.main(["check", "--ops", "adam,sgd", "--backend", "c"]) == 0
    out = capsys.readouterr().out
    assert "passed, 0 failed" in out and "FAIL" not in out


def test_pyopt_check_exits_1_when_a_wrong_kernel_is_registered(corrupted_adam, capsys):
    assert cli.main(["check", "--ops", "adam", "--backend", "c"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_comparison_reports_ulps_nan_parity_and_the_worst_index():
    expected = np.array([1.0, 2.0, np.nan, 4.0])
    actual = np.array([1.0, 2.0 + 2 * np.spacing(np.float32(2.0)), np.nan, 4.0], dtype=np.float32)
    c = check.Comparison.of(actual, expected, 0.0, 0.0)
    assert not c.ok and c.worst_index == (1,) and c.max_ulp == pytest.approx(2.0)
    assert check.Comparison.of(np.array([np.nan], np.float32), np.array([1.0]), 1, 1).nan_mismatch == 1
    assert check.Comparison.of(actual, actual.astype(np.float64), 0.0, 0.0).ok

"""`pyopt bench` on tiny sizes: the JSON it writes, the history and --compare logic, the plot, the model cases."""
import json
import mmap

import numpy as np
import pytest

from pyopt import cli, harness

FIELDS = {"op", "case", "tensors", "numel", "contender", "median_s", "p20_s", "p80_s", "bytes", "gb_s", "pct_probe",
          "probe_gb_s", "us_per_tensor", "faults_per_call", "pyopt_speedup"}


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out.json"
    status = cli.main(["bench", "--ops", "adam,sgd", "--sizes", "2^10,3x100", "--against", "numpy",
                       "--repeats", "2", "--json", str(path)])
    assert status == 0
    return json.loads(path.read_text())


def test_bench_json_has_the_machine_versions_commit_and_one_row_per_contender(record):
    assert {"time", "cpu", "threads", "isas", "versions", "git_commit", "triad_gb_s", "rows"} <= record.keys()
    assert record["versions"]["numpy"] == np.__version__
    contenders = {(r["op"], r["case"], r["contender"]) for r in record["rows"]}
    for op in ("adam", "sgd"):
        for case in ("2^10", "3x100"):
            assert {(op, case, "pyopt-c"), (op, case, "numpy"), (op, case, "numpy-inplace")} <= contenders
    for row in record["rows"]:
        assert FIELDS <= row.keys()
        assert 0 < row["p20_s"] <= row["median_s"] <= row["p80_s"]
        assert row["gb_s"] == pytest.approx(row["bytes"] / row["median_s"] / 1e9)
    adam_row = next(r for r in record["rows"] if r["op"] == "adam" and r["case"] == "3x100")
    assert adam_row["bytes"] == 28 * 300 and adam_row["tensors"] == 3


def _record(pct, spread=0.02):
    rows = [dict(op="adam", case="2^24", contender="pyopt-c", median_s=1.0, p20_s=1.0 - spread / 2,
                 p80_s=1.0 + spread / 2, pct_probe=pct)]
    return dict(time="t", rows=rows)


def test_compare_flags_a_regression_beyond_noise_and_not_noise():
    assert harness.regressions(_record(90.0), _record(70.0))                  # 29% slower, 2+2% spread
    assert not harness.regressions(_record(90.0), _record(87.0))              # 3.4%: under the 5% floor
    assert not harness.regressions(_record(90.0, 0.2), _record(75.0, 0.2))    # 20% slower but 40% spread
    assert not harness.regressions(_record(70.0), _record(90.0))              # faster is not a regression


def test_history_and_compare_exit_1_on_a_regression(tmp_path, capsys):
    history = tmp_path / "history.jsonl"
    base = dict(_record(1e6), **{"time": "an earlier run"})  # an impossible 1e6% of the probe: this run is slower
    base["rows"][0].update(op="sgd", case="2^10")
    history.write_text(json.dumps(base) + "\n")
    status = cli.main(["bench", "--ops", "sgd", "--sizes", "2^10", "--against", "", "--repeats", "2",
                       "--history", str(history), "--compare"])
    assert status == 1
    assert "regression" in capsys.readouterr().out
    assert len(history.read_text().splitlines()) == 2


def test_plot_writes_a_png(record, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    path = tmp_path / "bench.png"
    harness.plot(record, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_model_cases_have_the_published_tensor_and_parameter_counts():
    gpt2, resnet = harness.case_of("gpt2"), harness.case_of("resnet50")
    assert len(gpt2.sizes) == 148 and gpt2.numel == 124_439_808
    assert len(resnet.sizes) == 161 and resnet.numel == 25_557_032
    assert harness.case_of("200x1024").sizes == [1024] * 200
    assert harness.case_of("2^20").sizes == [2**20]


def test_bad_arguments_are_refused(capsys):
    assert cli.main(["bench", "--ops", "nonesuch"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["bench", "--compare"])


def test_interleaved_settles_on_the_next_repeats_buffers_then_times_its_own():
    # the untimed settle calls (fast calls here: many of them) must not touch the buffer set the timed call then
    # reads, or a rotating case is timed from the cache: per contender, runs of r + 1, then one call of r
    calls = []
    timings = harness.interleaved({"a": lambda r: calls.append(("a", r)), "b": lambda r: calls.append(("b", r))},
                                  repeats=3, warmup=1)
    for name in ("a", "b"):
        mine = [r for n, r in calls if n == name]
        collapsed = [r for i, r in enumerate(mine) if i == 0 or mine[i - 1] != r]
        assert collapsed == [1, 0, 2, 1, 3, 2, 4, 3]
        assert mine.count(0) == 1 and mine.count(1) > 2  # round 0's timed call once; round 0 settled on set 1
        assert len(timings[name].samples) == 3
    assert [n for i, (n, _) in enumerate(calls) if i == 0 or calls[i - 1][0] != n] == ["a", "b"] * 4


def _touch_fresh_pages(r):
    """Maps 16 MiB of new anonymous memory and writes one byte per 4 KiB page (at least 8 faults even with
    2 MiB pages), then unmaps it."""
    region = mmap.mmap(-1, 1 << 24)
    view = np.frombuffer(region, np.uint8)
    view[::4096] = 1
    del view
    region.close()


def test_interleaved_counts_the_page_faults_of_a_call_that_maps_fresh_memory():
    timings = harness.interleaved({"fresh": _touch_fresh_pages, "none": lambda r: None}, repeats=3)
    assert timings["fresh"].faults >= 8 and timings["none"].faults == 0


def test_norm_rows_hold_each_pass_against_the_triad_timed_in_its_own_rounds(tmp_path, monkeypatch):
    from pyopt import harness_norms
    seen = []
    real = harness.interleaved

    def spy(contenders, repeats, **kw):
        seen.append(sorted(contenders))
        return real(contenders, repeats, **kw)

    monkeypatch.setattr(harness, "interleaved", spy)
    path = tmp_path / "norms.json"
    assert cli.main(["bench", "--ops", "batch_norm", "--norm-shapes", "2x8x5x5", "--sizes", "2^10", "--against",
                     "numpy", "--repeats", "2", "--json", str(path)]) == 0
    assert [names for names in seen if harness_norms.TRIAD in names] == [
        sorted(["pyopt-c", "pyopt-c fresh", "numpy", harness_norms.TRIAD])] * 3  # forward, backward, both
    rows = [r for r in json.loads(path.read_text())["rows"] if r["op"] == "batch_norm"]
    assert {r["contender"] for r in rows} == {"pyopt-c", "pyopt-c fresh", "numpy"}
    assert {r["case"] for r in rows} == {"2x8x5x5 forward", "2x8x5x5 backward", "2x8x5x5 both"}
    for r in rows:
        assert r["pct_triad_medians"] == pytest.approx(100 * r["gb_s"] / r["triad_gb_s"])
        assert r["pct_triad"] > 0
    for case in {r["case"] for r in rows}:  # one triad per pass, shared by its contenders
        assert len({r["triad_gb_s"] for r in rows if r["case"] == case}) == 1


def test_norm_rows_take_the_median_of_per_round_ratios_to_the_triad():
    """Kernel slow in rounds 3-5, triad slow in rounds 4-5 (drift): round by round the kernel takes twice the
    triad's time but in round 3, so % triad is the median of those ratios, not the ratio of the medians (8 / 1)."""
    from pyopt import harness_norms
    shape = (4, 6)
    numel = 24
    triad = harness.Timing.of([1.0, 1.0, 1.0, 4.0, 4.0])
    kernel = harness.Timing.of([2.0, 2.0, 8.0, 8.0, 8.0])
    probe = harness.Timing.of([1.0])
    rows = cli._norm_rows("layer_norm", "4x6", {"forward": {"pyopt-c": kernel, harness_norms.TRIAD: triad}}, probe,
                          "c")
    nbytes = harness_norms.norm_bytes("layer_norm", shape, 4, "forward")
    (row,) = rows
    assert row["pct_triad"] == pytest.approx(100 * (nbytes / 2.0) / (12 * numel / 1.0))
    assert row["pct_triad_medians"] == pytest.approx(100 * (nbytes / 8.0) / (12 * numel / 1.0))


def test_buffer_sets_give_the_timed_call_a_set_its_settle_calls_did_not_touch():
    """Out-of-cache cases rotate over enough sets to fill twice the L3, and over two at least until a set is 4x
    the L3: with one, the untimed settle calls (set r + 1) would warm the timed call's own set."""
    llc = harness.LLC_BYTES
    assert harness.buffer_sets(llc // 32, cache_resident=False) == 8
    assert harness.buffer_sets(llc // 2, cache_resident=False) == 4
    assert harness.buffer_sets(2 * llc, cache_resident=False) == 2  # LayerNorm 2048x4096's forward: 64 MiB
    assert harness.buffer_sets(3 * llc, cache_resident=False) == 2  # the triad at 8192x768: 75 MB
    assert harness.buffer_sets(4 * llc, cache_resident=False) == 1
    assert harness.buffer_sets(llc // 32, cache_resident=True) == 1


def test_bn_pattern_ceiling_builds_and_runs(tmp_path):
    """bench/bn_pattern_ceiling.c (bench/README.md's access-pattern ceiling of the BatchNorm backward), built as its
    header says and run at a toy shape, so the program the README quotes is not dead code."""
    import os
    import re
    import subprocess
    import sysconfig

    from pyopt import _c

    source = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "bn_pattern_ceiling.c")
    exe = tmp_path / "bnpat"
    cc = sysconfig.get_config_var("CC").split()[0]  # the compiler that built the extension
    subprocess.run([cc, "-O2", "-mavx2", "-mfma", "-fopenmp", source, "-o", str(exe)], check=True)
    if "avx2" not in _c.isas():
        return  # built; this CPU cannot run AVX2 code
    out = subprocess.run([str(exe), "3", "8", "5", "7"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="2")).stdout
    assert out.startswith("3x8x35 floats, 2 threads")
    rows = re.findall(r"^  (\S.*?\S) +(\d+\.\d+) ms +(\d+\.\d+) GB/s +(\d+)% of the triad$", out, re.M)
    assert [r[0] for r in rows] == ["triad (plain stores)", "sequential 2-in-1-out", "one-pass, channel order",
                                    "two-pass, 1 channel", "two-pass, 8 channels", "two-pass, 32 channels"]
    assert rows[0][3] == "100" and all(float(r[1]) > 0 for r in rows)

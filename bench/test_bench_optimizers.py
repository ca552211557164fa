"""pytest-benchmark suite over the same harness as ``pyopt bench`` (pyopt.harness): run with
``pytest bench --benchmark-only --benchmark-json=out.json``; GB/s and % of the probe land in extra_info."""
import pytest

from pyopt import harness

CASES = [(harness.Case("2^16", [2**16]), True), (harness.Case("2^24", [2**24]), False),
         (harness.Case("200x1024", [1024] * 200), True)]


@pytest.mark.parametrize("case,cache_resident", CASES, ids=[c.name for c, _ in CASES])
@pytest.mark.parametrize("op", harness.available_optimizers())
def test_optimizer_step(benchmark, op, case, cache_resident):
    n_sets = harness.buffer_sets(harness.optimizer_bytes(op, case), cache_resident=cache_resident)
    step = harness.pyopt_contender(op, "c", harness.make_sets(case, n_sets))
    calls = iter(range(10**9))
    benchmark.pedantic(lambda: step(next(calls)), rounds=7, warmup_rounds=1)
    if not benchmark.enabled:  # --benchmark-disable: ran once as a smoke test, nothing was timed
        return
    probe = harness.probe_rw43(case.numel, 7, cache_resident=cache_resident)
    gbs = harness.optimizer_bytes(op, case) / benchmark.stats.stats.median / 1e9
    benchmark.extra_info.update(gb_s=gbs, pct_probe=100 * gbs / (28 * case.numel / probe.median / 1e9))

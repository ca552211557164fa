"""Throughput counters for real training loops: ``with pyopt.track() as t: ...; print(t.report())``.

While no tracker is active, kernel calls pay one truthiness test of a module-level list (no timer call).  While
one is, each kernel call is timed and counted per (op, backend, dtype): calls, elements, the op's declared
minimum bytes (the same model ``pyopt bench`` uses), seconds, GB/s and the percentage of the machine's
read-4/write-3 bandwidth probe.  Counters are updated under a lock, so threads may step optimizers concurrently.
"""
import io
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_active = []  # the trackers currently counting; empty means tracking is off
_active_lock = threading.Lock()
_probe_cache = {}


@dataclass
class Counter:
    calls: int = 0
    elements: int = 0
    bytes: int = 0
    seconds: float = 0.0


class Tracker:
    """Counts kernel calls made while it is active (see :func:`track`)."""

    def __init__(self, probe=True):
        self.counters = {}
        self._lock = threading.Lock()
        self._probe = probe

    def record(self, op, backend, dtype, elements, nbytes, seconds):
        key = (op, backend, str(dtype))
        with self._lock:
            c = self.counters.setdefault(key, Counter())
            c.calls += 1
            c.elements += int(elements)
            c.bytes += int(nbytes)
            c.seconds += seconds

    def probe_gb_s(self):
        """The read-4/write-3 probe's GB/s over a DRAM-sized buffer, measured once per process (None without C)."""
        if not self._probe:
            return None
        if "rw43" not in _probe_cache:
            from pyopt import _c, harness

            if not _c.available():
                return None
            n = 2**23
            _probe_cache["rw43"] = 28 * n / harness.probe_rw43(n, 5, cache_resident=False).median / 1e9
        return _probe_cache["rw43"]

    def as_dict(self):
        """{(op, backend, dtype): {calls, elements, bytes, seconds, gb_s, pct_probe}}."""
        probe = self.probe_gb_s() if self.counters else None
        out = {}
        with self._lock:
            items = list(self.counters.items())
        for key, c in items:
            gbs = c.bytes / c.seconds / 1e9 if c.seconds > 0 else float("nan")
            out[key] = dict(calls=c.calls, elements=c.elements, bytes=c.bytes, seconds=c.seconds, gb_s=gbs,
                            pct_probe=100 * gbs / probe if probe else None)
        return out

    def report(self):
        """The counters as a text table."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title="pyopt.track")
        for col in ("op", "backend", "dtype", "calls", "elements", "MB", "seconds", "GB/s", "% probe"):
            table.add_column(col, justify="left" if col in ("op", "backend", "dtype") else "right")
        for (op, backend, dtype), r in sorted(self.as_dict().items()):
            table.add_row(op, backend, dtype, str(r["calls"]), str(r["elements"]), f"{r['bytes'] / 1e6:.1f}",
                          f"{r['seconds']:.4f}", f"{r['gb_s']:.1f}",
                          "" if r["pct_probe"] is None else f"{r['pct_probe']:.0f}%")
        console = Console(width=110, record=True, file=io.StringIO())  # render to text only
        console.print(table)
        return console.export_text()


@contextmanager
def track(probe=True):
    """Count every kernel call made inside the block; ``probe=False`` skips measuring the bandwidth probe."""
    tracker = Tracker(probe=probe)
    with _active_lock:
        _active.append(tracker)
    try:
        yield tracker
    finally:
        with _active_lock:
            _active.remove(tracker)


def tracking():
    return bool(_active)


def timed(op, backend, tensors, nbytes, call):
    """Runs ``call()`` and records it with every active tracker."""
    t0 = time.perf_counter()
    call()
    seconds = time.perf_counter() - t0
    for tracker in list(_active):
        tracker.record(op, backend, tensors.dtype, tensors.total, nbytes, seconds)


def optimizer_bytes(spec, tensors, hparams, per_tensor):
    """The minimum bytes of one multi-tensor call: each tensor's bytes under the family's model."""
    itemsize = np.dtype(tensors.dtype).itemsize
    extra = {k: v for k, v in per_tensor.items() if k == "first_step"}
    return int(sum(spec.bytes_moved(int(n), itemsize, **hparams, **{k: bool(v[t]) for k, v in extra.items()})
                   for t, n in enumerate(tensors.numel)))

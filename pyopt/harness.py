"""The measurement harness behind ``pyopt bench`` (DESIGN.md section 7).

Every case is timed the same way: a warm-up call, then at least 7 repeats with the contenders interleaved
(A B A B ...) so that drift of this machine's memory bandwidth hits them alike; the median and p20/p80 are
reported.  DRAM-sized cases rotate over several independent buffer sets so that no repeat is served from the
last-level cache.  GB/s comes from each op's declared minimum bytes, and the bandwidth probe (csrc/bandwidth.c,
an in-place read-4/write-3 stream moving Adam's bytes with trivial maths) is measured on the same sizes in the
same run, so "% of probe" says how close a kernel is to the memory limit of this machine, now.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np

from pyopt import _c, optim

LLC_BYTES = 32 << 20  # the L3 of this project's machines; rotation keeps DRAM cases out of it


@dataclass
class Case:
    """One workload: a list of tensor sizes (one tensor, or a model-shaped list)."""

    name: str
    sizes: list
    dtype: type = np.float32

    @property
    def numel(self):
        return int(sum(self.sizes))


@dataclass
class Timing:
    median: float
    p20: float
    p80: float
    samples: list = field(repr=False, default_factory=list)

    @classmethod
    def of(cls, samples):
        s = np.asarray(samples)
        return cls(float(np.median(s)), float(np.percentile(s, 20)), float(np.percentile(s, 80)), list(samples))


def buffer_sets(case_bytes, *, cache_resident):
    """How many independent buffer sets a case rotates over: 1 when the case is meant to sit in cache,
    else enough that consecutive repeats cannot find their data in the last-level cache."""
    if cache_resident:
        return 1
    return max(1, min(8, math.ceil(2 * LLC_BYTES / max(case_bytes, 1))))


def interleaved(contenders, repeats, warmup=1):
    """{name: Timing} for callables ``fn(r)`` (r = repeat index) run round-robin, ``warmup`` rounds discarded."""
    samples = {name: [] for name in contenders}
    for r in range(warmup + repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn(r)
            dt = time.perf_counter() - t0
            if r >= warmup:
                samples[name].append(dt)
    return {name: Timing.of(s) for name, s in samples.items()}


# ---- the bandwidth probe ----
def probe_rw43(numel, repeats=7, *, cache_resident):
    """Seconds (Timing) of the in-place read-4/write-3 stream over ``numel`` float32: 28 bytes/elem."""
    sets = [[np.full(numel, v, np.float32) for v in (1.0, 0.5, 0.25, 0.125)]
            for _ in range(buffer_sets(28 * numel, cache_resident=cache_resident))]
    ptrs = [[_c.ffi.from_buffer("float[]", a) for a in s] for s in sets]

    def run(r):
        p, g, m, v = ptrs[r % len(ptrs)]
        _c.lib.pyopt_probe_rw43_f32(p, g, m, v, 0.5, numel)

    return interleaved({"probe": run}, repeats)["probe"]


def probe_triad(numel, repeats=7):
    a, b, c = (np.full(numel, v, np.float32) for v in (0.0, 1.0, 2.0))
    pa, pb, pc = (_c.ffi.from_buffer("float[]", x) for x in (a, b, c))
    return interleaved({"triad": lambda r: _c.lib.pyopt_probe_triad_f32(pa, pb, pc, 0.5, numel)}, repeats)["triad"]


# ---- optimizer contenders ----
OPTIMIZERS = {
    "sgd": ("SGD", dict(lr=1e-3, momentum=0.9)),
    "adagrad": ("Adagrad", dict(lr=1e-2)),
    "rmsprop": ("RMSprop", dict(lr=1e-2)),
    "adam": ("Adam", dict(lr=1e-3)),
    "adamw": ("AdamW", dict(lr=1e-3, weight_decay=1e-2)),
}
TORCH_FUSED = {"sgd", "adagrad", "adam", "adamw"}  # torch 2.13 has CPU fused kernels for these, not RMSprop


def available_optimizers():
    return [name for name, (cls, _) in OPTIMIZERS.items() if hasattr(optim, cls)]


def optimizer_bytes(op, case):
    cls_name, kwargs = OPTIMIZERS[op]
    spec = getattr(optim, cls_name).spec
    itemsize = np.dtype(case.dtype).itemsize
    return sum(spec.bytes_moved(n, itemsize, **kwargs) for n in case.sizes)


def make_sets(case, n_sets, seed=0):
    rng = np.random.default_rng(seed)
    return [([rng.standard_normal(n).astype(case.dtype) for n in case.sizes],
             [(1e-2 * rng.standard_normal(n)).astype(case.dtype) for n in case.sizes]) for _ in range(n_sets)]


def pyopt_contender(op, backend, sets):
    cls_name, kwargs = OPTIMIZERS[op]
    cls = getattr(optim, cls_name)
    opts = [(cls(params, backend=backend, **kwargs), grads) for params, grads in sets]
    return lambda r: opts[r % len(opts)][0].step(opts[r % len(opts)][1])


def torch_contenders(op, sets):
    """{label: fn} for torch.optim's implementations of ``op`` on the same data (as torch tensors)."""
    import torch

    cls_name, kwargs = OPTIMIZERS[op]
    variants = {"torch": dict(foreach=False), "torch-foreach": dict(foreach=True)}
    if op in TORCH_FUSED:
        variants["torch-fused"] = dict(fused=True)
    out = {}
    for label, extra in variants.items():
        opts = []
        for params, grads in sets:
            tparams = [torch.from_numpy(p.copy()) for p in params]
            for tp, g in zip(tparams, grads):
                tp.grad = torch.from_numpy(g)
            opts.append(getattr(torch.optim, cls_name)(tparams, **kwargs, **extra))
        out[label] = (lambda opts: (lambda r: opts[r % len(opts)].step()))(opts)
    return out


def run_optimizer_case(op, case, backends, *, peers=("numpy", "torch"), repeats=7, cache_resident):
    """{contender: Timing} for one op on one case, all contenders interleaved."""
    n_sets = buffer_sets(optimizer_bytes(op, case), cache_resident=cache_resident)
    sets = make_sets(case, n_sets)
    contenders = {}
    for b in backends:
        contenders[f"pyopt-{b}"] = pyopt_contender(op, b, sets)
    if "numpy" in peers and "numpy" not in backends:
        contenders["numpy"] = pyopt_contender(op, "numpy", sets)
    if "torch" in peers:
        try:
            contenders.update(torch_contenders(op, sets))
        except ImportError:
            pass
    return interleaved(contenders, repeats)

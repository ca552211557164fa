"""The measurement harness behind ``pyopt bench`` (DESIGN.md section 7).

Every case is timed the same way: a warm-up call, then at least 7 repeats with the contenders interleaved
(A B A B ...) so that drift of this machine's memory bandwidth hits them alike; the median and p20/p80 are
reported.  DRAM-sized cases rotate over several independent buffer sets so that no repeat is served from the
last-level cache.  GB/s comes from each op's declared minimum bytes, and the bandwidth probe (csrc/bandwidth.c,
an in-place read-4/write-3 stream moving Adam's bytes with trivial maths) is measured on the same sizes in the
same run, so "% of probe" says how close a kernel is to the memory limit of this machine, now.
"""
import math
import resource
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
    """Seconds per timed call (median, p20, p80, the samples) and the median count of minor page faults the
    process took during one (``faults``: fresh memory being mapped in, which is what separates a library that
    allocates its outputs on every call from one that does not)."""

    median: float
    p20: float
    p80: float
    samples: list = field(repr=False, default_factory=list)
    faults: float = 0.0

    @classmethod
    def of(cls, samples, faults=()):
        s = np.asarray(samples)
        return cls(float(np.median(s)), float(np.percentile(s, 20)), float(np.percentile(s, 80)), list(samples),
                   float(np.median(faults)) if len(faults) else 0.0)


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def buffer_sets(case_bytes, *, cache_resident):
    """How many independent buffer sets a case rotates over: 1 when the case is meant to sit in cache,
    else enough that consecutive repeats cannot find their data in the last-level cache, and two at least while a
    set is under 4x the L3: ``interleaved``'s untimed calls run set r + 1 just before the timed call on set r, the
    same set when there is one, which then finds part of itself in the L3 (a 75 MB triad, 2 threads: 7-20%
    faster that way than alternating two sets, three runs).  Larger sets (the optimizers' 2^24 and model cases)
    keep one: the L3 holds under a quarter of such a set, and their state is large."""
    if cache_resident:
        return 1
    least = 1 if case_bytes >= 4 * LLC_BYTES else 2
    return max(least, min(8, math.ceil(2 * LLC_BYTES / max(case_bytes, 1))))


SETTLE_SECONDS = 2e-3  # longer than an idle OpenMP worker spins (GOMP_SPINCOUNT's default: ~300k polls)
SETTLE_BELOW = 20e-3   # a call this long is not moved by a spin tail or a cache refill: no settling needed


def interleaved(contenders, repeats, warmup=1, settle=True):
    """{name: Timing} for callables ``fn(r)`` (r = repeat index) run round-robin, ``warmup`` rounds discarded.

    With ``settle``, each timed call shorter than SETTLE_BELOW follows untimed calls of the same contender (at least one, for at least
    SETTLE_SECONDS): what the previous contender left behind (its data in the caches, and on this 2-core machine
    the other OpenMP runtime's threads still spinning: torch ships its own libgomp) is paid by the untimed calls,
    so each timing is the steady state of a training loop that runs one library, while the rounds still
    interleave the contenders against drift.  The untimed calls run repeat ``r + 1``'s buffers: settling on the
    timed call's own buffer set would leave that set in the L3 for it (LayerNorm 8192x768 forward: 1.54 ms that
    way, 1.93 ms this way, one run each), where a case that rotates is meant to be timed from memory."""
    samples = {name: [] for name in contenders}
    faults = {name: [] for name in contenders}
    last = {name: 0.0 for name in contenders}
    for r in range(warmup + repeats):
        for name, fn in contenders.items():
            if settle and last[name] < SETTLE_BELOW:
                start = time.perf_counter()
                fn(r + 1)
                while time.perf_counter() - start < SETTLE_SECONDS:
                    fn(r + 1)
            f0 = _minor_faults()
            t0 = time.perf_counter()
            fn(r)
            dt = last[name] = time.perf_counter() - t0
            if r >= warmup:
                samples[name].append(dt)
                faults[name].append(_minor_faults() - f0)
    return {name: Timing.of(s, faults[name]) for name, s in samples.items()}


# ---- the bandwidth probe ----
def _probe_fn(kernel, values, numel, bytes_per_elem, cache_resident):
    """fn(r): one call of ``kernel(*arrays, 0.5, numel)`` over float32 arrays filled with ``values``, repeat r on
    buffer set r mod n, rotating as the cases of the same size do (buffer_sets)."""
    sets = [[np.full(numel, v, np.float32) for v in values]
            for _ in range(buffer_sets(bytes_per_elem * numel, cache_resident=cache_resident))]
    ptrs = [[_c.ffi.from_buffer("float[]", a) for a in s] for s in sets]
    return lambda r: kernel(*ptrs[r % len(ptrs)], 0.5, numel)


def _probe(kernel, values, numel, bytes_per_elem, repeats, cache_resident):
    """Timing of the probe _probe_fn describes, on its own."""
    return interleaved({"probe": _probe_fn(kernel, values, numel, bytes_per_elem, cache_resident)}, repeats)["probe"]


def probe_rw43(numel, repeats=7, *, cache_resident):
    """Seconds (Timing) of the in-place read-4/write-3 stream over ``numel`` float32: 28 bytes/elem."""
    return _probe(_c.lib.pyopt_probe_rw43_f32, (1.0, 0.5, 0.25, 0.125), numel, 28, repeats, cache_resident)


def triad_fn(numel):
    """fn(r): one STREAM triad a = b + s*c over ``numel`` float32 (12 bytes/elem), rotating over buffer sets as
    the out-of-cache cases do: a triad whose 12 * numel bytes partly fit in the L3 would be a cache figure, not
    the DRAM roofline the norms (which rotate too) are held to.  A contender for ``interleaved``."""
    return _probe_fn(_c.lib.pyopt_probe_triad_f32, (0.0, 1.0, 2.0), numel, 12, False)


def probe_triad(numel, repeats=7):
    """Seconds (Timing) of the triad of triad_fn, on its own."""
    return interleaved({"probe": triad_fn(numel)}, repeats)["probe"]


# ---- cases ----
def gpt2_small_shapes():
    """GPT-2 small's 148 parameter tensors (124.4M elements): embeddings, 12 blocks of 12, final LayerNorm."""
    d, vocab, ctx = 768, 50257, 1024
    block = [[d], [d], [d, 3 * d], [3 * d], [d, d], [d], [d], [d], [d, 4 * d], [4 * d], [4 * d, d], [d]]
    return [[vocab, d], [ctx, d]] + block * 12 + [[d], [d]]


def resnet50_shapes():
    """ResNet-50's 161 parameter tensors (25.6M elements): 53 convolutions, 53 BatchNorms (weight, bias), fc."""
    shapes = [[64, 3, 7, 7], [64], [64]]
    in_ch = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            for out, cin, k in ((width, in_ch, 1), (width, width, 3), (4 * width, width, 1)):
                shapes += [[out, cin, k, k], [out], [out]]
            if b == 0:
                shapes += [[4 * width, in_ch, 1, 1], [4 * width], [4 * width]]
            in_ch = 4 * width
    return shapes + [[1000, 2048], [1000]]


MODELS = {"gpt2": gpt2_small_shapes, "resnet50": resnet50_shapes, "tiny200": lambda: [[1024]] * 200}


def case_of(text):
    """A Case from '2^24', '65536', '200x1024' or a model name (gpt2, resnet50, tiny200)."""
    text = text.strip()
    if text in MODELS:
        return Case(text, [int(np.prod(s)) for s in MODELS[text]()])
    if "x" in text:
        count, size = text.split("x")
        return Case(text, [case_of(size).numel] * int(count))
    if "^" in text:
        base, exp = text.split("^")
        return Case(text, [int(base) ** int(exp)])
    return Case(text, [int(text)])


# ---- optimizer contenders ----
OPTIMIZERS = {
    "sgd": ("SGD", dict(lr=1e-3, momentum=0.9)),
    "adagrad": ("Adagrad", dict(lr=1e-2)),
    "rmsprop": ("RMSprop", dict(lr=1e-2)),
    "adam": ("Adam", dict(lr=1e-3)),
    "adamw": ("AdamW", dict(lr=1e-3, weight_decay=1e-2)),
}
NUMPY_MAX_ELEMENTS = 2**24  # the textbook NumPy peer takes seconds per step past this; it is left out there


def available_optimizers():
    return [name for name, (cls, _) in OPTIMIZERS.items() if hasattr(optim, cls)]


def optimizer_bytes(op, case):
    cls_name, kwargs = OPTIMIZERS[op]
    spec = getattr(optim, cls_name).spec
    itemsize = np.dtype(case.dtype).itemsize
    return sum(spec.bytes_moved(n, itemsize, **kwargs) for n in case.sizes)


def make_sets(case, n_sets, seed=0):
    """``n_sets`` independent (params, grads) lists: uniform values (never zeros), drawn straight in the case's
    dtype (a normal draw in float64 then a cast costs seconds per GPT-2-sized set and measures nothing)."""
    rng = np.random.default_rng(seed)

    def draw(n, scale):
        a = rng.random(n, dtype=case.dtype)
        a -= 0.5
        a *= 2 * scale
        return a

    return [([draw(n, 1.0) for n in case.sizes], [draw(n, 1e-2) for n in case.sizes]) for _ in range(n_sets)]


def pyopt_contender(op, backend, sets):
    cls_name, kwargs = OPTIMIZERS[op]
    cls = getattr(optim, cls_name)
    opts = [(cls(params, backend=backend, **kwargs), grads) for params, grads in sets]
    return lambda r: opts[r % len(opts)][0].step(opts[r % len(opts)][1])


def optimizer_contenders(op, case, backends, peers, *, cache_resident):
    """({label: fn(r)}, [notes on peers left out]) for one op on one case."""
    from pyopt import peers as peer_impls

    n_sets = buffer_sets(optimizer_bytes(op, case), cache_resident=cache_resident)
    kwargs = OPTIMIZERS[op][1]
    # one data set shared by every contender (each keeps its own state): the values drift by everyone's small
    # updates, which changes no timing, and a GPT-2 case does not need a gigabyte of fresh data per contender
    sets = make_sets(case, n_sets)
    contenders, notes = {}, []
    for b in backends:
        contenders[f"pyopt-{b}"] = pyopt_contender(op, b, sets)
    if "numpy" in peers:
        if case.numel <= NUMPY_MAX_ELEMENTS:
            contenders["numpy"] = pyopt_contender(op, "numpy", sets)
            contenders.update(peer_impls.numpy_inplace_contenders(op, kwargs, sets))
        else:
            notes.append(f"numpy left out of {case.name} (over {NUMPY_MAX_ELEMENTS} elements: seconds per step)")
    for peer, factory in (("torch", peer_impls.torch_contenders), ("deepspeed", peer_impls.deepspeed_contenders)):
        if peer in peers:
            try:
                contenders.update(factory(op, kwargs, sets))
            except ImportError as exc:
                notes.append(f"{peer} not measured: {exc}")
    return contenders, notes


def run_optimizer_case(op, case, backends, *, peers=("numpy", "torch"), repeats=7, cache_resident):
    """({contender: Timing}, notes) for one op on one case, all contenders interleaved."""
    contenders, notes = optimizer_contenders(op, case, backends, peers, cache_resident=cache_resident)
    return interleaved(contenders, repeats), notes


# ---- records, history and regressions ----
def machine_info():
    import os
    import platform
    import subprocess

    from pyopt import __version__
    from pyopt.runtime import get_num_threads

    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    versions = {"pyopt": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "numba", "deepspeed"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return dict(cpu=cpu, machine=platform.machine(), cores=os.cpu_count(), threads=get_num_threads(),
                isas=_c.isas() if _c.available() else [], versions=versions, git_commit=commit)


def _read_lines(path):
    try:
        with open(path) as fh:
            return fh.readlines()
    except OSError:
        return []


def regressions(previous, current, min_change=0.05):
    """Rows of ``current`` slower than in ``previous`` beyond both runs' own noise.

    Rows are matched on (op, case, contender).  The figure compared is the share of the bandwidth probe measured
    in the same run (this machine's bandwidth drifts by 2x within an hour, so absolute times would flag drift),
    and a change counts only when it exceeds ``min_change`` and the p20-p80 spread of both runs.
    Returns [(row, previous row, relative slowdown)].
    """
    def key(r):
        return (r["op"], r["case"], r["contender"])

    def spread(r):
        return (r["p80_s"] - r["p20_s"]) / r["median_s"] if r["median_s"] > 0 else 0.0

    before = {key(r): r for r in previous["rows"]}
    found = []
    for row in current["rows"]:
        old = before.get(key(row))
        if old is None or not old.get("pct_probe") or not row.get("pct_probe"):
            continue
        slowdown = old["pct_probe"] / row["pct_probe"] - 1
        if slowdown > max(min_change, spread(row) + spread(old)):
            found.append((row, old, slowdown))
    return found


def plot(record, path):
    """GB/s against elements per contender, one panel per op (norms: forward+backward), with the probe as the
    roofline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in record["rows"] if " " not in r["case"] or r["case"].endswith(" both")]
    ops = sorted({r["op"] for r in rows})
    ncols = min(4, len(ops))
    nrows = -(-len(ops) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False)
    colors = {}
    for ax, op in zip(axes.flat, ops):
        op_rows = [r for r in rows if r["op"] == op]
        for contender in sorted({r["contender"] for r in op_rows}):
            pts = sorted((r["numel"], r["gb_s"]) for r in op_rows if r["contender"] == contender)
            color = colors.setdefault(contender, f"C{len(colors)}")
            ax.plot(*zip(*pts), marker="o", color=color, label=contender,
                    lw=2.5 if contender.startswith("pyopt") else 1)
        roof = sorted({(r["numel"], r["probe_gb_s"]) for r in op_rows})
        ax.plot(*zip(*roof), "k--", label="probe (read-4/write-3)")
        ax.set_xscale("log")
        ax.set_title(op + (" (forward+backward)" if "norm" in op else ""))
        ax.set_xlabel("elements per step")
        ax.set_ylabel("GB/s (declared minimum bytes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(ops):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Norm rows of ``pyopt bench``: LayerNorm, RMSNorm and BatchNorm forward, backward and both, against NumPy and
PyTorch on the same data, with the harness's interleaving, rotation and bytes model (the references'
``bytes_moved``).  Contenders:

- ``pyopt-<backend>``: preallocated outputs (``out=``), as a training loop that keeps its buffers does;
- ``pyopt-<backend> fresh``: new outputs on every call, as a plain ``y, mean, rstd = F.layer_norm(x, ...)`` gets
  them (glibc maps each allocation over 32 MiB afresh and the kernel zeroes its pages on first touch, so this
  pays page faults that ``out=`` does not);
- ``torch``: ATen's kernels called directly (``native_layer_norm`` / ``native_batch_norm`` and their backward
  ops; fresh outputs, no autograd bookkeeping);
- ``torch autograd`` (forward+backward only): what a PyTorch user runs, ``F.layer_norm`` / ``F.batch_norm`` /
  ``F.rms_norm`` on tensors that require grad, then ``.backward(dy)``.
"""
import numpy as np

from pyopt import functional as F
from pyopt import harness

NORM_OPS = ("layer_norm", "rms_norm", "batch_norm")
NORM_SHAPES = {"layer_norm": ["8192x768", "2048x4096", "65536x128"], "rms_norm": ["8192x768", "2048x4096"],
               "batch_norm": ["32x64x56x56", "64x256x14x14"]}
QUICK_NORM_SHAPES = {"layer_norm": ["8192x768"], "rms_norm": ["8192x768"], "batch_norm": ["32x64x56x56"]}
PASSES = ("forward", "backward", "both")


def _bytes_fns():
    import importlib  # pyopt.reference re-exports the functions under the modules' names

    return {op: importlib.import_module(f"pyopt.reference.{op}").bytes_moved for op in NORM_OPS}


def shape_of(text):
    return tuple(int(v) for v in text.split("x"))


def norm_bytes(op, shape, itemsize, which):
    fn = _bytes_fns()[op]
    if op == "batch_norm":
        return fn(int(np.prod(shape)), shape[1], itemsize, which=which, training=True)
    rows, features = int(np.prod(shape[:-1])), shape[-1]
    return fn(rows, features, itemsize, which=which)


class _Buffers:
    """One input set with preallocated outputs for a norm op (x, dy, weight, bias, stats, outputs)."""

    def __init__(self, op, shape, rng):
        self.x = (1.0 + rng.standard_normal(shape)).astype(np.float32)
        self.dy = rng.standard_normal(shape).astype(np.float32)
        width = shape[1] if op == "batch_norm" else shape[-1]
        self.w = (1.0 + 0.1 * rng.standard_normal(width)).astype(np.float32)
        self.b = (0.1 * rng.standard_normal(width)).astype(np.float32)
        self.y, self.dx = np.empty_like(self.x), np.empty_like(self.x)
        self.dw, self.db = np.empty_like(self.w), np.empty_like(self.b)
        stats_shape = (width,) if op == "batch_norm" else shape[:-1]
        self.mean, self.rstd = np.empty(stats_shape, np.float32), np.empty(stats_shape, np.float32)
        self.running_mean, self.running_var = np.zeros(width, np.float32), np.ones(width, np.float32)


def _pyopt_passes(op, bufs, backend, fresh=False):
    """{pass: fn()} running one pyopt call (or forward then backward) on ``bufs``; ``fresh``: new outputs on each
    call instead of ``bufs``' preallocated ones.  The backward takes the statistics a forward returned."""
    def outs(**named):
        return {} if fresh else {k: getattr(bufs, v) for k, v in named.items()}

    if op == "layer_norm":
        shape = (bufs.x.shape[-1],)

        def fwd():
            return F.layer_norm(bufs.x, shape, bufs.w, bufs.b, backend=backend, **outs(out="y", mean="mean",
                                                                                       rstd="rstd"))

        def bwd(stats):
            F.layer_norm_backward(bufs.dy, bufs.x, bufs.w, stats[1], stats[2], shape, backend=backend,
                                  **outs(out="dx", dweight="dw", dbias="db"))
    elif op == "rms_norm":
        shape = (bufs.x.shape[-1],)

        def fwd():
            return F.rms_norm(bufs.x, shape, bufs.w, backend=backend, **outs(out="y", rstd="rstd"))

        def bwd(stats):
            F.rms_norm_backward(bufs.dy, bufs.x, bufs.w, stats[1], shape, backend=backend,
                                **outs(out="dx", dweight="dw"))
    else:
        def fwd():
            return F.batch_norm(bufs.x, bufs.w, bufs.b, bufs.running_mean, bufs.running_var, training=True,
                                backend=backend, **outs(out="y", save_mean="mean", save_rstd="rstd"))

        def bwd(stats):
            F.batch_norm_backward(bufs.dy, bufs.x, bufs.w, stats[1], stats[2], training=True, backend=backend,
                                  **outs(out="dx", dweight="dw", dbias="db"))
    stats = fwd()  # the backward alone runs on the statistics of one forward

    return {"forward": fwd, "backward": lambda: bwd(stats), "both": lambda: bwd(fwd())}


def _torch_passes(op, bufs):
    """{pass: fn()} for torch's own CPU kernels on the same data (backward through aten's backward ops, so no
    autograd bookkeeping is timed)."""
    import torch

    x, dy, w, b = (torch.from_numpy(a) for a in (bufs.x, bufs.dy, bufs.w, bufs.b))
    aten = torch.ops.aten
    if op == "layer_norm":
        shape = [x.shape[-1]]
        _, mean, rstd = aten.native_layer_norm(x, shape, w, b, 1e-5)
        passes = {"forward": lambda: aten.native_layer_norm(x, shape, w, b, 1e-5),
                  "backward": lambda: aten.native_layer_norm_backward(dy, x, shape, mean, rstd, w, b,
                                                                      [True, True, True])}
    elif op == "rms_norm":  # no public aten RMSNorm backward: forward+backward is the autograd contender's
        return {"forward": lambda: torch.nn.functional.rms_norm(x, [x.shape[-1]], w)}
    else:
        rm, rv = torch.from_numpy(bufs.running_mean.copy()), torch.from_numpy(bufs.running_var.copy())
        _, save_mean, save_invstd = aten.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)
        passes = {"forward": lambda: aten.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5),
                  "backward": lambda: aten.native_batch_norm_backward(dy, x, w, rm, rv, save_mean, save_invstd,
                                                                      True, 1e-5, [True, True, True])}

    def both_native():
        passes["forward"]()
        passes["backward"]()

    return dict(passes, both=both_native)


def _torch_autograd_passes(op, bufs):
    """{"both": fn()}: the torch user's forward+backward, ``F.<op>`` on tensors that require grad, then
    ``.backward(dy)`` (grads reset to None each call, as ``zero_grad()`` does by default)."""
    import torch

    functional = torch.nn.functional
    x, w, b = (torch.from_numpy(a).clone().requires_grad_(True) for a in (bufs.x, bufs.w, bufs.b))
    dy = torch.from_numpy(bufs.dy)
    if op == "layer_norm":
        def forward():
            return functional.layer_norm(x, [x.shape[-1]], w, b, 1e-5)
    elif op == "rms_norm":
        def forward():
            return functional.rms_norm(x, [x.shape[-1]], w)
    else:
        rm, rv = torch.from_numpy(bufs.running_mean.copy()), torch.from_numpy(bufs.running_var.copy())

        def forward():
            return functional.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)

    def both():
        x.grad = w.grad = b.grad = None
        forward().backward(dy)

    return {"both": both}


TRIAD = "triad probe"


def run_norm_case(op, shape_text, backends, *, peers=("numpy", "torch"), repeats=7):
    """{pass: {contender: Timing}}, notes for one norm op at one shape; contenders interleaved per pass.

    Each pass's contenders include TRIAD, the triad probe over as many elements (harness.triad_fn), timed in the
    same rounds: the norm issue's roofline, measured in the same moments as the kernels it judges.  On this
    shared machine the memory bandwidth drifts by 1.5x within a minute, and a probe timed before or after the
    case (as it was until 2026-11-27) put the same kernel at 61-74% of the triad in five runs and 49-57% in
    three runs minutes later."""
    shape = shape_of(shape_text)
    # Rotation sized by the lightest pass (the forward: x read, y written), not by forward+backward: each pass is
    # timed on its own, and a 12-25 MiB x that one set's forward re-reads would sit in the 32 MiB L3 (more so
    # beside streamed outputs, which bypass it), timing the cache instead of memory.
    n_sets = harness.buffer_sets(norm_bytes(op, shape, 4, "forward"), cache_resident=False)
    rng = np.random.default_rng(0)
    per_contender = {}
    for b in backends:
        per_contender[f"pyopt-{b}"] = [_pyopt_passes(op, _Buffers(op, shape, rng), b) for _ in range(n_sets)]
    if backends:
        per_contender[f"pyopt-{backends[0]} fresh"] = [_pyopt_passes(op, _Buffers(op, shape, rng), backends[0],
                                                                     fresh=True) for _ in range(n_sets)]
    notes = []
    if "numpy" in peers:
        per_contender["numpy"] = [_pyopt_passes(op, _Buffers(op, shape, rng), "numpy")]
    if "torch" in peers:
        try:
            per_contender["torch"] = [_torch_passes(op, _Buffers(op, shape, rng)) for _ in range(n_sets)]
        except ImportError as exc:
            notes.append(f"torch not measured: {exc}")
    if "torch" in peers and "torch" in per_contender:
        per_contender["torch autograd"] = [_torch_autograd_passes(op, _Buffers(op, shape, rng))
                                           for _ in range(n_sets)]
    triad = harness.triad_fn(int(np.prod(shape)))
    results = {}
    for which in PASSES:
        contenders = {name: (lambda sets, w: (lambda r: sets[r % len(sets)][w]()))(sets, which)
                      for name, sets in per_contender.items() if which in sets[0]}
        results[which] = harness.interleaved(dict(contenders, **{TRIAD: triad}), repeats)
    if "torch" in per_contender and "backward" not in per_contender["torch"][0]:
        notes.append(f"torch {op} backward alone has no public CPU entry point: timed only as forward+backward "
                     "(torch autograd)")
    return results, notes

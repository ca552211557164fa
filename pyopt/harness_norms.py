"""Norm rows of ``pyopt bench``: LayerNorm, RMSNorm and BatchNorm forward, backward and both, against NumPy and
PyTorch on the same data, with the harness's interleaving, rotation and bytes model (the references'
``bytes_moved``).  pyopt writes into preallocated outputs (``out=``), as a training loop should; torch's
functional API cannot, so its rows include the cost of fresh outputs, which is what its users pay.
"""
import numpy as np

from pyopt import functional as F
from pyopt import harness

NORM_OPS = ("layer_norm", "rms_norm", "batch_norm")
NORM_SHAPES = {"layer_norm": ["8192x768", "2048x4096"], "rms_norm": ["8192x768"], "batch_norm": ["32x64x56x56"]}
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


def _pyopt_passes(op, bufs, backend):
    """{pass: fn()} running one pyopt call (or forward then backward) on ``bufs``."""
    if op == "layer_norm":
        shape = (bufs.x.shape[-1],)

        def fwd():
            F.layer_norm(bufs.x, shape, bufs.w, bufs.b, out=bufs.y, mean=bufs.mean, rstd=bufs.rstd, backend=backend)

        def bwd():
            F.layer_norm_backward(bufs.dy, bufs.x, bufs.w, bufs.mean, bufs.rstd, shape, out=bufs.dx,
                                  dweight=bufs.dw, dbias=bufs.db, backend=backend)
    elif op == "rms_norm":
        shape = (bufs.x.shape[-1],)

        def fwd():
            F.rms_norm(bufs.x, shape, bufs.w, out=bufs.y, rstd=bufs.rstd, backend=backend)

        def bwd():
            F.rms_norm_backward(bufs.dy, bufs.x, bufs.w, bufs.rstd, shape, out=bufs.dx, dweight=bufs.dw,
                                backend=backend)
    else:
        def fwd():
            F.batch_norm(bufs.x, bufs.w, bufs.b, bufs.running_mean, bufs.running_var, training=True, out=bufs.y,
                         save_mean=bufs.mean, save_rstd=bufs.rstd, backend=backend)

        def bwd():
            F.batch_norm_backward(bufs.dy, bufs.x, bufs.w, bufs.mean, bufs.rstd, training=True, out=bufs.dx,
                                  dweight=bufs.dw, dbias=bufs.db, backend=backend)
    fwd()  # the backward needs the statistics of a forward

    def both():
        fwd()
        bwd()

    return {"forward": fwd, "backward": bwd, "both": both}


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
    elif op == "rms_norm":
        shape = [x.shape[-1]]
        xg = x.clone().requires_grad_(True)
        wg = w.clone().requires_grad_(True)

        def both():
            torch.nn.functional.rms_norm(xg, shape, wg).backward(dy)

        return {"forward": lambda: torch.nn.functional.rms_norm(x, shape, w), "both": both}
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


def run_norm_case(op, shape_text, backends, *, peers=("numpy", "torch"), repeats=7):
    """{pass: {contender: Timing}}, notes for one norm op at one shape; contenders interleaved per pass."""
    shape = shape_of(shape_text)
    nbytes = norm_bytes(op, shape, 4, "both")
    n_sets = harness.buffer_sets(nbytes, cache_resident=False)
    rng = np.random.default_rng(0)
    per_contender = {}
    for b in backends:
        per_contender[f"pyopt-{b}"] = [_pyopt_passes(op, _Buffers(op, shape, rng), b) for _ in range(n_sets)]
    notes = []
    if "numpy" in peers:
        per_contender["numpy"] = [_pyopt_passes(op, _Buffers(op, shape, rng), "numpy")]
    if "torch" in peers:
        try:
            per_contender["torch"] = [_torch_passes(op, _Buffers(op, shape, rng)) for _ in range(n_sets)]
        except ImportError as exc:
            notes.append(f"torch not measured: {exc}")
    results = {}
    for which in PASSES:
        contenders = {name: (lambda sets, w: (lambda r: sets[r % len(sets)][w]()))(sets, which)
                      for name, sets in per_contender.items() if which in sets[0]}
        results[which] = harness.interleaved(contenders, repeats)
    if "torch" in per_contender and "backward" not in per_contender["torch"][0]:
        notes.append(f"torch {op} backward alone has no public CPU entry point: timed only as forward+backward")
    return results, notes

"""GPU check: verify every optimizer's and norm's CUDA kernel against its reference, then time them against
PyTorch (fused optimizers; F.layer_norm / rms_norm / batch_norm with autograd) and a device-to-device copy, all on
the device, in one run.

    python bench/gpu_check.py                    # on a machine with a GPU (about 2 minutes)
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu_check.py --sim   # toy sizes on the CPU, as CI runs it

Verification: each family (Adam, AdamW, SGD, Adagrad, RMSprop) with several mode combinations, float32 and
float64, odd sizes, 3 steps on random data, against the NumPy reference in the same dtype (the kernels compile
without FMA contraction, so equality is expected to be bitwise; the pass criterion is the tolerance table's), plus
Adam through the public optimizer API on torch CUDA tensors and CuPy arrays in place, when those are installed.
Norms (LayerNorm, RMSNorm, BatchNorm NCHW and channels-last, training and eval, forward and backward) through
``pyopt.functional`` on Numba device arrays (and LayerNorm on torch CUDA tensors), against the float64 reference
with the norm rows of the tolerance table (``pyopt.check.TOLERANCES``).

Timing: CUDA events around ``--inner`` back-to-back steps, median (p20, p80) of ``--repeats``; GB/s from each op's
declared minimum bytes; "% copy" against a device-to-device copy (bytes read + written) timed in the same run.
Peers: ``torch.optim.{Adam, AdamW, SGD, Adagrad}(fused=True)`` where torch supports it on CUDA, RMSprop with
``foreach=True`` (torch has no fused RMSprop).  Norm rows time forward + backward together: LayerNorm and RMSNorm
at (8192, 4096) and BatchNorm2d training at (32, 64, 56, 56) and (64, 256, 14, 14), float32, pyopt writing into
``out=`` buffers, torch's functional op plus ``torch.autograd.grad``; the copy they are compared with moves x's
bytes.  Each pyopt launch is checked (a synchronize after the warm-up
surfaces a launch error there); one failing case is reported and the others still run.  The table is printed
last; with ``$OUT`` set (or ``--json PATH``) the rows also go to a JSON file.
"""
import argparse
import json
import math
import os
import platform
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(HERE, "..", "kernels")) and "pyopt" not in sys.modules:
    # run from a source tree: prefer its pyopt (it maps kernels/ itself) over an installed one
    sys.path.insert(0, os.path.dirname(HERE))

import pyopt  # noqa: E402
import pyopt.arrays  # noqa: E402
import pyopt.check  # noqa: E402
from pyopt import backends, reference  # noqa: E402
from pyopt.arrays import TensorList  # noqa: E402
from pyopt.reference.batch_norm import bytes_moved as bn_bytes  # noqa: E402
from pyopt.reference.layer_norm import bytes_moved as ln_bytes  # noqa: E402
from pyopt.reference.rms_norm import bytes_moved as rms_bytes  # noqa: E402

TOLERANCE = {np.dtype(np.float64): (1e-7, 1e-7), np.dtype(np.float32): (1.3e-6, 1e-5)}  # tests/_tolerances.py

# (label, op, hyper-parameters, state roles used, torch class and kwargs or None)
CASES = [
    ("adam", "adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                          decoupled_weight_decay=False), ("exp_avg", "exp_avg_sq"), ("Adam", dict(lr=1e-3))),
    ("adam amsgrad+L2", "adam", dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.1, amsgrad=True,
                                     maximize=True, decoupled_weight_decay=False),
     ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), None),
    ("adam betas=(0.3,0.5)", "adam", dict(lr=1e-3, betas=(0.3, 0.5), eps=1e-3, weight_decay=0.0, amsgrad=False,
                                          maximize=False, decoupled_weight_decay=False),
     ("exp_avg", "exp_avg_sq"), None),
    ("adamw", "adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                           maximize=False, decoupled_weight_decay=True), ("exp_avg", "exp_avg_sq"),
     ("AdamW", dict(lr=1e-3, weight_decay=1e-2))),
    ("sgd momentum", "sgd", dict(lr=1e-2, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False,
                                 maximize=False), ("momentum_buffer",), ("SGD", dict(lr=1e-2, momentum=0.9))),
    ("sgd nesterov+wd", "sgd", dict(lr=1e-2, momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=True,
                                    maximize=True), ("momentum_buffer",), None),
    ("sgd plain", "sgd", dict(lr=1e-2, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                              maximize=False), (), None),
    ("adagrad", "adagrad", dict(lr=1e-2, lr_decay=0.01, weight_decay=0.0, eps=1e-10, maximize=False), ("sum",),
     ("Adagrad", dict(lr=1e-2, lr_decay=0.01))),
    ("rmsprop", "rmsprop", dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                                maximize=False), ("square_avg",), ("RMSprop", dict(lr=1e-2))),
    ("rmsprop centered+mom", "rmsprop", dict(lr=1e-3, alpha=0.9, eps=1e-8, weight_decay=0.1, momentum=0.9,
                                             centered=True, maximize=True),
     ("square_avg", "grad_avg", "momentum_buffer"), None),
]
REFERENCES = {"adam": (reference.adam_step, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
              "sgd": (reference.sgd_step, ("momentum_buffer",)),
              "adagrad": (reference.adagrad_step, ("sum",)),
              "rmsprop": (reference.rmsprop_step, ("square_avg", "grad_avg", "momentum_buffer"))}
BYTES = {"adam": reference.adam.bytes_moved, "sgd": reference.sgd.bytes_moved,
         "adagrad": reference.adagrad.bytes_moved, "rmsprop": reference.rmsprop.bytes_moved}


def log(*args):
    print(*args, flush=True)


def initial_state(role, n, dtype, rng):
    if role in ("exp_avg_sq", "max_exp_avg_sq", "sum"):
        return np.abs(rng.standard_normal(n)).astype(dtype)
    if role == "square_avg":
        return (1 + np.abs(rng.standard_normal(n))).astype(dtype)
    return (0.1 * rng.standard_normal(n)).astype(dtype)


def per_tensor(op, step, n):
    if op in ("adam", "adagrad"):
        return {"step": np.full(n, step, dtype=np.int64)}
    if op == "sgd":
        return {"first_step": np.full(n, step == 1)}
    return {}


def kernel_call(op, hparams, device_arrays, grads):
    tensors = TensorList({"param": device_arrays["param"], "grad": grads,
                          **{r: v for r, v in device_arrays.items() if r != "param"}})
    kernel = backends.select(op, "cuda", on_device=True)[1]
    return tensors, kernel


# ---------------------------------------------------------------- verification

def compare(actual, expected, dtype):
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    bitwise = actual.tobytes() == expected.tobytes()
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
        rel = err / np.maximum(np.abs(expected.astype(np.float64)), np.finfo(np.float64).tiny)
    ok = bool(np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True))
    return ok, bitwise, float(err.max(initial=0)), float(rel.max(initial=0))


def verify_case(cuda, label, op, hparams, roles, dtype, sizes, rng):
    ref_fn, ref_roles = REFERENCES[op]
    host = {"param": [rng.standard_normal(n).astype(dtype) for n in sizes]}
    for role in roles:
        host[role] = [initial_state(role, n, dtype, rng) for n in sizes]
    expected = {r: [a.copy() for a in v] for r, v in host.items()}
    device = {r: [cuda.to_device(a) for a in v] for r, v in host.items()}
    for step in range(1, 4):
        grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
        values = per_tensor(op, step, len(sizes))
        tensors, kernel = kernel_call(op, hparams, device, [cuda.to_device(g) for g in grads])
        kernel(tensors, hparams, values)
        cuda.synchronize()  # a failed launch raises here, at its own case
        for k in range(len(sizes)):
            state = [expected[r][k] if r in roles else None for r in ref_roles]
            extra = {key: v[k].item() for key, v in values.items()}
            ref_fn(expected["param"][k], grads[k], *state, **hparams, **extra)
    ok, bitwise, max_abs, max_rel = True, True, 0.0, 0.0
    for role, arrays in device.items():
        for a, e in zip(arrays, expected[role]):
            c_ok, c_bit, c_abs, c_rel = compare(a.copy_to_host(), e, dtype)
            ok, bitwise = ok and c_ok, bitwise and c_bit
            max_abs, max_rel = max(max_abs, c_abs), max(max_rel, c_rel)
    return dict(case=label, dtype=np.dtype(dtype).name, ok=ok, bitwise=bitwise, max_abs_err=max_abs,
                max_rel_err=max_rel)


def verify_libraries(sizes, rng):
    """Adam through pyopt.optim on torch CUDA tensors and CuPy arrays, in place, against the reference."""
    rows = []
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    expected = pyopt.optim.AdamW([p.copy() for p in params], backend="numpy", amsgrad=True)
    for _ in range(2):
        expected.step(grads)
    for library in ("torch", "cupy"):
        try:
            if library == "torch":
                import torch

                if not torch.cuda.is_available():
                    continue
                dev = [torch.tensor(p, device="cuda", requires_grad=True) for p in params]
                dgrads = [torch.tensor(g, device="cuda") for g in grads]

                def back(x):
                    return x.detach().cpu().numpy()
            else:
                import cupy

                dev = [cupy.asarray(p) for p in params]
                dgrads = [cupy.asarray(g) for g in grads]

                def back(x):
                    return cupy.asnumpy(x)
            addresses = [id(x) for x in dev]
            opt = pyopt.optim.AdamW(dev, amsgrad=True)
            for _ in range(2):
                opt.step(dgrads)
            import numba.cuda as nc

            nc.synchronize()
            same_objects = [id(x) for x in opt.param_groups[0]["params"]] == addresses
            oks = [compare(back(a), e, np.float32) for a, e in zip(dev, expected.param_groups[0]["params"])]
            rows.append(dict(case=f"AdamW api on {library}", dtype="float32",
                             ok=all(o[0] for o in oks) and same_objects, bitwise=all(o[1] for o in oks),
                             max_abs_err=max(o[2] for o in oks), max_rel_err=max(o[3] for o in oks)))
        except ImportError:
            continue
        except Exception as exc:  # noqa: BLE001 - reported as a failed row
            rows.append(dict(case=f"AdamW api on {library}", dtype="float32", ok=False, bitwise=False,
                             max_abs_err=math.nan, max_rel_err=math.nan, error=f"{type(exc).__name__}: {exc}"))
    return rows


# ---------------------------------------------------------------- norms

def _norm_row(label, dtype, pairs, kind):
    """One verify row from (name, device array, float64 expected) triples, with the norm tolerances."""
    rtol, atol = pyopt.check.TOLERANCES[kind][np.dtype(dtype)]
    ok, max_abs, max_rel, failed = True, 0.0, 0.0, []
    for name, actual, expected in pairs:
        c = pyopt.check.Comparison.of(pyopt.arrays.to_host(actual), expected, rtol, atol)
        ok = ok and c.ok
        max_abs, max_rel = max(max_abs, c.max_abs), max(max_rel, c.max_rel)
        if not c.ok:
            failed.append(name)
    row = dict(case=label, dtype=np.dtype(dtype).name, ok=ok, bitwise=False, max_abs_err=max_abs, max_rel_err=max_rel)
    if failed:
        row["error"] = "outside the tolerance: " + ", ".join(failed)
    return row


def _f64(*arrays):
    return tuple(None if a is None else a.astype(np.float64) for a in arrays)


def verify_layer_norms(cuda, shape, dtype, rng, to_device):
    """LayerNorm and RMSNorm forward and backward of one shape: four rows."""
    from pyopt import functional as F

    rows, cols = shape
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    w, b = (1 + 0.5 * rng.standard_normal(cols)).astype(dtype), rng.standard_normal(cols).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dx_, w_, b_, dy_ = to_device(x), to_device(w), to_device(b), to_device(dy)
    y, mean, rstd = F.layer_norm(dx_, (cols,), w_, b_)
    e = reference.layer_norm(*_f64(x), (cols,), *_f64(w, b))
    out = [_norm_row(f"layer_norm {shape}", dtype, zip(("y", "mean", "rstd"), (y, mean, rstd), e), "norm_forward")]
    g = F.layer_norm_backward(dy_, dx_, w_, mean, rstd, (cols,))
    m64, r64 = _f64(pyopt.arrays.to_host(mean), pyopt.arrays.to_host(rstd))
    e = reference.layer_norm_backward(*_f64(dy, x, w), m64, r64, (cols,))
    out.append(_norm_row(f"layer_norm_bwd {shape}", dtype, zip(("dx", "dweight", "dbias"), g, e), "norm_backward"))
    y, rstd = F.rms_norm(dx_, (cols,), w_, eps=1e-6)
    e = reference.rms_norm(*_f64(x), (cols,), *_f64(w), eps=1e-6)
    out.append(_norm_row(f"rms_norm {shape}", dtype, zip(("y", "rstd"), (y, rstd), e), "norm_forward"))
    g = F.rms_norm_backward(dy_, dx_, w_, rstd, (cols,))
    e = reference.rms_norm_backward(*_f64(dy, x, w), *_f64(pyopt.arrays.to_host(rstd)), (cols,))
    out.append(_norm_row(f"rms_norm_bwd {shape}", dtype, zip(("dx", "dweight"), g, e), "norm_backward"))
    cuda.synchronize()
    return out


def verify_batch_norms(cuda, shape, axis, dtype, rng):
    """BatchNorm training (momentum 0.1) and eval, forward and backward, of one shape and channel axis."""
    from pyopt import functional as F

    C = shape[axis]
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    w, b = (1 + 0.5 * rng.standard_normal(C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out = []
    for training in (True, False):
        rm, rv = rng.standard_normal(C).astype(dtype), (0.5 + rng.random(C)).astype(dtype)
        drm, drv = cuda.to_device(rm), cuda.to_device(rv)
        rm64, rv64 = _f64(rm, rv)
        y, sm, sr = F.batch_norm(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), drm, drv,
                                 training=training, momentum=0.1, axis=axis)
        y64, sm64, sr64 = reference.batch_norm(*_f64(x, w, b), rm64, rv64, training=training, momentum=0.1,
                                               axis=axis)
        mode = "train" if training else "eval"
        out.append(_norm_row(f"batch_norm {mode} {shape} axis={axis}", dtype,
                             zip(("y", "save_mean", "save_rstd", "running_mean", "running_var"),
                                 (y, sm, sr, drm, drv), (y64, sm64, sr64, rm64, rv64)), "norm_forward"))
        g = F.batch_norm_backward(cuda.to_device(dy), cuda.to_device(x), cuda.to_device(w), sm, sr,
                                  training=training, axis=axis)
        e = reference.batch_norm_backward(*_f64(dy, x, w), *_f64(sm.copy_to_host(), sr.copy_to_host()),
                                          training=training, axis=axis)
        out.append(_norm_row(f"batch_norm_bwd {mode} {shape} axis={axis}", dtype,
                             zip(("dx", "dweight", "dbias"), g, e), "norm_backward"))
    cuda.synchronize()
    return out


def verify_norms(cuda, rng, simulated):
    ln_shapes = [(3, 33), (1, 7)] if simulated else [(64, 1023), (7, 4097), (1, 1), (300, 768)]
    bn_cases = ([((2, 3, 5, 5), 1), ((2, 5, 5, 3), -1)] if simulated else
                [((8, 16, 14, 14), 1), ((8, 14, 14, 16), -1), ((3, 5, 40000), 1), ((64, 7), 1)])
    jobs = [(f"norms {shape}", lambda shape=shape, dtype=dtype: verify_layer_norms(cuda, shape, dtype, rng,
                                                                                   cuda.to_device), dtype)
            for dtype in (np.float32, np.float64) for shape in ln_shapes]
    jobs += [(f"batch_norm {shape}", lambda shape=shape, axis=axis, dtype=dtype: verify_batch_norms(
        cuda, shape, axis, dtype, rng), dtype) for dtype in (np.float32, np.float64) for shape, axis in bn_cases]
    torch = None if simulated else torch_device()
    if torch is not None:  # fresh outputs are torch tensors on x's device, written without host copies
        def on_torch(shape=(33, 1027), dtype=np.float32):
            rows = verify_layer_norms(cuda, shape, dtype, rng, lambda a: torch.tensor(a, device="cuda"))
            for r in rows:
                r["case"] += " (torch)"
            return rows

        jobs.append(("layer_norm on torch", on_torch, np.float32))
    rows = []
    for label, job, dtype in jobs:
        try:
            new = job()
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            new = [dict(case=label, dtype=np.dtype(dtype).name, ok=False, bitwise=False, max_abs_err=math.nan,
                        max_rel_err=math.nan, error=f"{type(exc).__name__}: {exc}")]
        for row in new:
            log(f"  verify {row['case']:40s} {row['dtype']:8s} {'ok' if row['ok'] else 'FAIL'}")
        rows += new
    return rows


def _copy_ms(cuda, timer, n, dtype):
    src = cuda.to_device(np.zeros(n, dtype))
    dst = cuda.device_array(n, dtype=dtype)
    return timer(lambda: dst.copy_to_device(src))[0]


def time_norms(cuda, timer, torch, simulated, deadline):
    """Forward + backward of each norm on the device: pyopt into out= buffers, torch functional + autograd."""
    from pyopt import functional as F

    rows_out = []
    ln_shape = (4, 64) if simulated else (8192, 4096)
    bn_shapes = [(2, 4, 3, 3)] if simulated else [(32, 64, 56, 56), (64, 256, 14, 14)]
    rng = np.random.default_rng(7)
    cases = [("layer_norm", ln_shape), ("rms_norm", ln_shape)] + [("batch_norm", s) for s in bn_shapes]
    for op, shape in cases:
        if time.monotonic() > deadline:
            log("  (time budget reached: skipping the remaining norm rows)")
            break
        n, dtype = int(np.prod(shape)), np.float32
        label = f"{op} f+b {'x'.join(map(str, shape))}"
        try:
            copy_gbs = 2 * n * 4 / _copy_ms(cuda, timer, n, dtype) / 1e6
            x = (3 + rng.standard_normal(shape)).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            dx_, ddy, dy_out, out = cuda.to_device(x), cuda.to_device(dy), cuda.device_array(shape, dtype), \
                cuda.device_array(shape, dtype)
            if op == "batch_norm":
                C = shape[1]
                nbytes = bn_bytes(n, C, 4, which="both")
                w, b = cuda.to_device(np.ones(C, dtype)), cuda.to_device(np.zeros(C, dtype))
                rm, rv = cuda.to_device(np.zeros(C, dtype)), cuda.to_device(np.ones(C, dtype))
                sm, sr, dw, db = (cuda.device_array(C, dtype) for _ in range(4))

                def step():
                    F.batch_norm(dx_, w, b, rm, rv, training=True, out=out, save_mean=sm, save_rstd=sr)
                    F.batch_norm_backward(ddy, dx_, w, sm, sr, out=dy_out, dweight=dw, dbias=db)
            else:
                rows, cols = shape
                w, b = cuda.to_device(np.ones(cols, dtype)), cuda.to_device(np.zeros(cols, dtype))
                mean, rstd = cuda.device_array(rows, dtype), cuda.device_array(rows, dtype)
                dw, db = cuda.device_array(cols, dtype), cuda.device_array(cols, dtype)
                if op == "layer_norm":
                    nbytes = ln_bytes(rows, cols, 4, which="both")

                    def step():
                        F.layer_norm(dx_, (cols,), w, b, out=out, mean=mean, rstd=rstd)
                        F.layer_norm_backward(ddy, dx_, w, mean, rstd, (cols,), out=dy_out, dweight=dw, dbias=db)
                else:
                    nbytes = rms_bytes(rows, cols, 4, which="both")

                    def step():
                        F.rms_norm(dx_, (cols,), w, eps=1e-6, out=out, rstd=rstd)
                        F.rms_norm_backward(ddy, dx_, w, rstd, (cols,), out=dy_out, dweight=dw)
            ms, p20, p80 = timer(step)
            rows_out.append(dict(op=label, impl="pyopt cuda", n=n, ms=ms, p20=p20, p80=p80, gbs=nbytes / ms / 1e6,
                                 pct_copy=100 * nbytes / ms / 1e6 / copy_gbs))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            rows_out.append(dict(op=label, impl="pyopt cuda", n=n, error=f"{type(exc).__name__}: {exc}"))
            continue
        if torch is not None:
            rows_out.append(time_torch_norm(torch, timer, op, label, shape, x, dy, nbytes, copy_gbs))
        cuda.synchronize()
    return rows_out


def time_torch_norm(torch, timer, op, label, shape, x, dy, nbytes, copy_gbs):
    tf = torch.nn.functional
    try:
        if op == "rms_norm" and not hasattr(tf, "rms_norm"):
            return dict(op=label, impl="torch", n=x.size, error="this torch has no F.rms_norm")
        xt = torch.tensor(x, device="cuda", requires_grad=True)
        dyt = torch.tensor(dy, device="cuda")
        C = shape[1] if op == "batch_norm" else shape[-1]
        wt = torch.ones(C, device="cuda", requires_grad=True)
        bt = torch.zeros(C, device="cuda", requires_grad=True)
        if op == "batch_norm":
            rm, rv = torch.zeros(C, device="cuda"), torch.ones(C, device="cuda")

            def step():
                y = tf.batch_norm(xt, rm, rv, wt, bt, training=True, momentum=0.1)
                torch.autograd.grad(y, (xt, wt, bt), dyt)
        elif op == "layer_norm":
            def step():
                y = tf.layer_norm(xt, (C,), wt, bt)
                torch.autograd.grad(y, (xt, wt, bt), dyt)
        else:
            def step():
                y = tf.rms_norm(xt, (C,), wt, eps=1e-6)
                torch.autograd.grad(y, (xt, wt), dyt)
        ms, p20, p80 = timer(step)
        return dict(op=label, impl="torch autograd", n=x.size, ms=ms, p20=p20, p80=p80, gbs=nbytes / ms / 1e6,
                    pct_copy=100 * nbytes / ms / 1e6 / copy_gbs)
    except Exception as exc:  # noqa: BLE001
        return dict(op=label, impl="torch autograd", n=x.size, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- timing

class Timer:
    """Median (p20, p80) milliseconds per call of ``fn``, ``inner`` calls between two CUDA events."""

    def __init__(self, cuda, simulated, repeats, inner):
        self.cuda, self.simulated, self.repeats, self.inner = cuda, simulated, repeats, inner

    def __call__(self, fn):
        fn()
        self.cuda.synchronize()  # the warm-up compiled and ran; a launch error surfaces here
        samples = []
        for _ in range(self.repeats):
            if self.simulated:
                t0 = time.perf_counter()
                for _ in range(self.inner):
                    fn()
                samples.append((time.perf_counter() - t0) * 1e3 / self.inner)
                continue
            start, end = self.cuda.event(), self.cuda.event()
            start.record()
            for _ in range(self.inner):
                fn()
            end.record()
            end.synchronize()
            samples.append(self.cuda.event_elapsed_time(start, end) / self.inner)
        samples = np.array(samples)
        return float(np.median(samples)), float(np.percentile(samples, 20)), float(np.percentile(samples, 80))


def torch_device():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def time_size(cuda, timer, n, dtype, pool, torch, deadline, tune=False):
    """One size: the copy, then each timed case (pyopt, then its torch peer).  ``pool`` holds random values to
    fill buffers from (drawing 2^28 normals per buffer would take seconds each)."""
    rows = []
    itemsize = np.dtype(dtype).itemsize
    values = pool[:n]
    src = cuda.to_device(values)
    dst = cuda.device_array(n, dtype=dtype)
    copy_ms = timer(lambda: dst.copy_to_device(src))[0]
    copy_gbs = 2 * n * itemsize / copy_ms / 1e6
    rows.append(dict(op="d2d copy", impl="cuda memcpy", n=n, ms=copy_ms, gbs=copy_gbs, pct_copy=100.0))
    del src, dst
    for label, op, hparams, roles, peer in CASES:
        if time.monotonic() > deadline:
            log(f"  (time budget reached: skipping the rest at n={n})")
            break
        if label not in ("adam", "adamw", "sgd momentum", "adagrad", "rmsprop"):
            continue
        nbytes = BYTES[op](n, itemsize, **hparams, first_step=False)
        try:
            device = {"param": [cuda.to_device(values)]}
            for role in roles:
                positive = role in ("exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg")
                device[role] = [cuda.to_device(np.abs(values) + dtype(role == "square_avg") if positive
                                               else dtype(0.1) * values)]
            grads = [cuda.to_device(dtype(1e-2) * values[::-1])]
            tensors, kernel = kernel_call(op, hparams, device, grads)
            counter = {"step": 0}

            def step():
                counter["step"] += 1
                kernel(tensors, hparams, per_tensor(op, counter["step"], 1))

            ms, p20, p80 = timer(step)
            rows.append(dict(op=label, impl="pyopt cuda", n=n, ms=ms, p20=p20, p80=p80, gbs=nbytes / ms / 1e6,
                             pct_copy=100 * nbytes / ms / 1e6 / copy_gbs))
            del device, grads, tensors
        except Exception as exc:  # noqa: BLE001
            rows.append(dict(op=label, impl="pyopt cuda", n=n, error=f"{type(exc).__name__}: {exc}"))
            traceback.print_exc()
        if torch is not None and peer is not None:
            rows.append(time_torch(torch, timer, label, peer, n, dtype, nbytes, copy_gbs))
        cuda.synchronize()
    if tune and time.monotonic() < deadline:
        rows += tune_launch_shape(cuda, timer, n, dtype, pool, copy_gbs)
    return rows


def tune_launch_shape(cuda, timer, n, dtype, pool, copy_gbs):
    """Adam at one size with other piece sizes and block sizes than the defaults (kernels/_launch.py), to see
    whether the launch shape leaves bandwidth behind."""
    from pyopt.kernels import _launch

    rows = []
    label, op, hparams, roles, _ = CASES[0]
    nbytes = BYTES[op](n, np.dtype(dtype).itemsize, **hparams)
    defaults = (_launch.GPU_PIECE, _launch.GPU_THREADS)
    values = pool[:n]
    device = {"param": [cuda.to_device(values)], "exp_avg": [cuda.to_device(dtype(0.1) * values)],
              "exp_avg_sq": [cuda.to_device(np.abs(values))]}
    grads = [cuda.to_device(dtype(1e-2) * values[::-1])]
    try:
        for piece, threads in ((1 << 12, 128), (1 << 13, 128), (1 << 14, 128), (1 << 14, 256), (1 << 15, 128),
                               (1 << 16, 256)):
            _launch.GPU_PIECE, _launch.GPU_THREADS = piece, threads
            tensors, kernel = kernel_call(op, hparams, device, grads)
            counter = {"step": 0}

            def step():
                counter["step"] += 1
                kernel(tensors, hparams, per_tensor(op, counter["step"], 1))

            ms, p20, p80 = timer(step)
            rows.append(dict(op=label, impl=f"tune {piece >> 10}k/{threads}", n=n, ms=ms, p20=p20, p80=p80,
                             gbs=nbytes / ms / 1e6, pct_copy=100 * nbytes / ms / 1e6 / copy_gbs))
    except Exception as exc:  # noqa: BLE001
        rows.append(dict(op=label, impl="tune", n=n, error=f"{type(exc).__name__}: {exc}"))
    finally:
        _launch.GPU_PIECE, _launch.GPU_THREADS = defaults
    return rows


def time_torch(torch, timer, label, peer, n, dtype, nbytes, copy_gbs):
    name, kwargs = peer
    impl = "torch fused" if name != "RMSprop" else "torch foreach"
    try:
        p = torch.randn(n, device="cuda", dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
        p.grad = 1e-2 * torch.randn_like(p)
        options = dict(fused=True) if name != "RMSprop" else dict(foreach=True)
        try:
            opt = getattr(torch.optim, name)([p], **kwargs, **options)
        except RuntimeError:  # torch's fused Adagrad is CPU-only (2.11): its best CUDA path is foreach
            impl, options = "torch foreach", dict(foreach=True)
            opt = getattr(torch.optim, name)([p], **kwargs, **options)
        ms, p20, p80 = timer(opt.step)
        return dict(op=label, impl=impl, n=n, ms=ms, p20=p20, p80=p80, gbs=nbytes / ms / 1e6,
                    pct_copy=100 * nbytes / ms / 1e6 / copy_gbs)
    except Exception as exc:  # noqa: BLE001 - e.g. a torch without a fused CUDA Adagrad
        return dict(op=label, impl=impl, n=n, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- report

def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__, "pyopt": pyopt.__version__}
    for name in ("numba", "numba_cuda", "torch", "cupy"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except ImportError:
            pass
    return out


def print_table(verify_rows, time_rows):
    log("\nverify (3 steps vs the NumPy reference in the same dtype):")
    log(f"  {'case':40s} {'dtype':8s} {'result':8s} {'bitwise':8s} {'max abs err':>12s} {'max rel err':>12s}")
    for r in verify_rows:
        result = "ok" if r["ok"] else "FAIL"
        log(f"  {r['case']:40s} {r['dtype']:8s} {result:8s} {str(r['bitwise']):8s} {r['max_abs_err']:12.3e} "
            f"{r['max_rel_err']:12.3e}" + (f"  {r['error']}" if "error" in r else ""))
    log("\ntiming (median of repeats; GB/s from the minimum bytes an op moves; % of the d2d copy):")
    log(f"  {'op':28s} {'impl':14s} {'n':>11s} {'ms':>9s} {'GB/s':>8s} {'% copy':>7s}")
    for r in time_rows:
        if "error" in r:
            log(f"  {r['op']:28s} {r['impl']:14s} {r['n']:11d}  error: {r['error'][:60]}")
        else:
            log(f"  {r['op']:28s} {r['impl']:14s} {r['n']:11d} {r['ms']:9.3f} {r['gbs']:8.1f} {r['pct_copy']:6.1f}%")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", action="store_true", help="toy sizes under NUMBA_ENABLE_CUDASIM=1 (CI)")
    parser.add_argument("--sizes", type=lambda s: [int(eval(x, {})) for x in s.split(",")], default=None,
                        help="timed float32 sizes, e.g. 2**24,2**28 (default 2**20,2**24,2**26,2**28)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--inner", type=int, default=None)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds after which timing stops")
    parser.add_argument("--no-tune", action="store_true", help="skip the launch-shape sweep at the largest size")
    parser.add_argument("--norm-budget", type=float, default=45.0, help="seconds for the norm timing rows")
    parser.add_argument("--json", default=None, help="output file (default $OUT/gpu_check.json when $OUT is set)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.sim and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        parser.error("--sim needs NUMBA_ENABLE_CUDASIM=1 in the environment (numba reads it at import)")
    why = backends.available()["cuda"]
    if why is not None:
        log(f"the cuda backend cannot run here: {why}")
        return 2
    from numba import cuda

    simulated = backends.simulator()
    info = dict(versions=versions(), simulator=simulated, machine=platform.node())
    if not simulated:
        device = cuda.get_current_device()
        info["device"] = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        info["compute_capability"] = list(device.compute_capability)
    log(f"gpu_check: {json.dumps(info)}")
    rng = np.random.default_rng(20240601)

    verify_sizes = [1, 7, 33, 1000, 0, 129] if simulated else [1, 7, 1023, 278011, 0, 2**20 + 3]
    verify_rows = []
    for label, op, hparams, roles, _ in CASES:
        for dtype in (np.float32, np.float64):
            try:
                row = verify_case(cuda, label, op, hparams, roles, dtype, verify_sizes, rng)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                row = dict(case=label, dtype=np.dtype(dtype).name, ok=False, bitwise=False, max_abs_err=math.nan,
                           max_rel_err=math.nan, error=f"{type(exc).__name__}: {exc}")
            verify_rows.append(row)
            log(f"  verify {label:24s} {row['dtype']:8s} {'ok' if row['ok'] else 'FAIL'}"
                f"{' (bitwise)' if row['bitwise'] else ''}")
    if not simulated:
        verify_rows += verify_libraries([5, 2**16 + 1], rng)
    verify_rows += verify_norms(cuda, rng, simulated)

    torch = None if simulated else torch_device()
    sizes = args.sizes or ([1000] if simulated else [2**20, 2**24, 2**26, 2**28])
    repeats = args.repeats or (2 if simulated else 9)
    inner = args.inner or (1 if simulated else 5)
    timer = Timer(cuda, simulated, repeats, inner)
    time_rows = []
    deadline = started + args.budget
    pool = rng.standard_normal(max(sizes)).astype(np.float32) if sizes else None
    for n in sizes:
        if time.monotonic() > deadline:
            log(f"time budget reached: sizes from {n} on skipped")
            break
        log(f"timing n={n}")
        time_rows += time_size(cuda, timer, n, np.float32, pool, torch, deadline,
                               tune=n == max(sizes) and not args.no_tune)
    log("timing norms")
    # the norm rows get their own budget after the optimizer sizes, so the whole script stays under 5 minutes
    time_rows += time_norms(cuda, timer, torch, simulated, time.monotonic() + args.norm_budget)

    result = dict(info=info, verify=verify_rows, timing=time_rows, seconds=time.monotonic() - started)
    path = args.json or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1, default=str)
    print_table(verify_rows, time_rows)
    failed = [r for r in verify_rows if not r["ok"]] + [r for r in time_rows
                                                        if "error" in r and r["impl"].startswith("pyopt")]
    log(f"\n{len(verify_rows) - len([r for r in verify_rows if not r['ok']])} of {len(verify_rows)} verified, "
        f"{len(failed)} failures, {time.monotonic() - started:.0f} s" + (f"; json: {path}" if path else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU check: verify every optimizer's CUDA kernel against its reference, then time it against PyTorch's fused
optimizers and a device-to-device copy, all on the device, in one run.

    python bench/gpu_check.py                    # on a machine with a GPU (about 2 minutes)
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu_check.py --sim   # toy sizes on the CPU, as CI runs it

Verification: each family (Adam, AdamW, SGD, Adagrad, RMSprop) with several mode combinations, float32 and
float64, odd sizes, 3 steps on random data, against the NumPy reference in the same dtype (the kernels compile
without FMA contraction, so equality is expected to be bitwise; the pass criterion is the tolerance table's), plus
Adam through the public optimizer API on torch CUDA tensors and CuPy arrays in place, when those are installed.

Timing: CUDA events around ``--inner`` back-to-back steps, median (p20, p80) of ``--repeats``; GB/s from each op's
declared minimum bytes; "% copy" against a device-to-device copy (bytes read + written) timed in the same run.
Peers: ``torch.optim.{Adam, AdamW, SGD, Adagrad}(fused=True)`` where torch supports it on CUDA, RMSprop with
``foreach=True`` (torch has no fused RMSprop).  Each pyopt launch is checked (a synchronize after the warm-up
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
from pyopt import backends, reference  # noqa: E402
from pyopt.arrays import TensorList  # noqa: E402

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
    log(f"  {'case':28s} {'dtype':8s} {'result':8s} {'bitwise':8s} {'max abs err':>12s} {'max rel err':>12s}")
    for r in verify_rows:
        result = "ok" if r["ok"] else "FAIL"
        log(f"  {r['case']:28s} {r['dtype']:8s} {result:8s} {str(r['bitwise']):8s} {r['max_abs_err']:12.3e} "
            f"{r['max_rel_err']:12.3e}" + (f"  {r['error']}" if "error" in r else ""))
    log("\ntiming (median of repeats; GB/s from the minimum bytes an op moves; % of the d2d copy):")
    log(f"  {'op':16s} {'impl':14s} {'n':>11s} {'ms':>9s} {'GB/s':>8s} {'% copy':>7s}")
    for r in time_rows:
        if "error" in r:
            log(f"  {r['op']:16s} {r['impl']:14s} {r['n']:11d}  error: {r['error'][:60]}")
        else:
            log(f"  {r['op']:16s} {r['impl']:14s} {r['n']:11d} {r['ms']:9.3f} {r['gbs']:8.1f} {r['pct_copy']:6.1f}%")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", action="store_true", help="toy sizes under NUMBA_ENABLE_CUDASIM=1 (CI)")
    parser.add_argument("--sizes", type=lambda s: [int(eval(x, {})) for x in s.split(",")], default=None,
                        help="timed float32 sizes, e.g. 2**24,2**28 (default 2**20,2**24,2**26,2**28)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--inner", type=int, default=None)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds after which timing stops")
    parser.add_argument("--no-tune", action="store_true", help="skip the launch-shape sweep at the largest size")
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

"""Comparison against the references: the tolerance table, error reports, verify mode and ``pyopt check``.

The tolerance table lives here, not in the tests, because verify mode (``verify=True`` / ``PYOPT_VERIFY=1``)
and ``pyopt check`` apply it at run time; ``tests/_tolerances.py`` reads this one table.
"""
import os
from dataclasses import dataclass

import numpy as np

# (rtol, atol) by kind of comparison and dtype.  Anchors: torch.testing.assert_close's defaults; every entry looser
# than its anchor says why.
TOLERANCES = {
    # one optimizer step in the array's dtype against a float64 reference step from the same state
    "optimizer": {np.dtype(np.float64): (1e-7, 1e-7), np.dtype(np.float32): (1.3e-6, 1e-5)},
    # the float64 reference against torch.optim in float64: the same formulas, but ATen's vectorized add/lerp use
    # FMA, so the last bit differs (one rounding per fused op, a few ops per step)
    "reference_vs_torch": {np.dtype(np.float64): (1e-12, 1e-14), np.dtype(np.float32): (1.3e-6, 1e-6)},
    # norms (LayerNorm, RMSNorm, BatchNorm): forward outputs y, mean, rstd and running stats against the float64
    # reference on the same (rounded) inputs
    "norm_forward": {np.dtype(np.float64): (1e-7, 1e-7), np.dtype(np.float32): (1.3e-6, 1e-5),
                     np.dtype(np.float16): (1e-3, 1e-5)},
    # norm backwards dx, dweight, dbias.  float32 atol loosened to RELIABILITY.md's "about 1e-4 backward": dx is a
    # small difference of terms of the size of dy * weight (its row/channel mean is subtracted), so its float32
    # rounding is absolute in the scale of dy * weight, not relative to dx; dweight/dbias are sums over up to 10^5
    # rows whose rounding grows with the sum.  float16 atol: dy * weight ~ 1, where float16's half-ulp is 4.9e-4
    "norm_backward": {np.dtype(np.float64): (1e-7, 1e-7), np.dtype(np.float32): (1e-5, 1e-4),
                      np.dtype(np.float16): (1e-3, 1e-3)},
    # the float64 norm references against torch.nn.functional / torch.native_* in float64: ATen sums with Welford /
    # cascade sums and FMA, so results agree to the last few bits of sums over thousands of terms, not bitwise
    "norm_vs_torch": {np.dtype(np.float64): (1e-10, 1e-12)},
}

# The accuracy claims for float32 rows far from zero (RELIABILITY.md row 24): max |y_float32 - y_float64| of
# LayerNorm with weight 1 and bias 0, by the kind of row.  PyTorch 2.13's float32 layer_norm: ~1e-4 and ~1e-1.
NORM_OFF_CENTRE_ATOL = {"1e3 + randn": 1e-4, "1e4 + 1e-2 randn": 2e-3}


def tolerance(kind, dtype):
    return TOLERANCES[kind][np.dtype(dtype)]


class VerifyError(AssertionError):
    """A fast kernel disagreed with the reference beyond the tolerance table."""


@dataclass
class Comparison:
    """How ``actual`` differs from ``expected``: max abs/rel error, max ULPs (in actual's dtype), the worst index."""

    ok: bool
    max_abs: float
    max_rel: float
    max_ulp: float
    worst_index: tuple
    actual: float
    expected: float
    nan_mismatch: int

    @classmethod
    def of(cls, actual, expected, rtol, atol):
        a = np.asarray(actual)
        e = np.asarray(expected, dtype=np.float64)
        if a.size == 0:
            return cls(True, 0.0, 0.0, 0.0, (), float("nan"), float("nan"), 0)
        af = a.astype(np.float64)
        nan_a, nan_e = np.isnan(af), np.isnan(e)
        both_nan = nan_a & nan_e
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.where(both_nan | (af == e), 0.0, np.abs(af - e))
            err = np.where(nan_a ^ nan_e, np.inf, err)
            allowed = atol + rtol * np.abs(e)
            rel = err / np.where(e == 0, 1.0, np.abs(e))
            ulp = err / np.spacing(np.abs(e).astype(a.dtype)).astype(np.float64)
        excess = np.where(both_nan, -np.inf, np.where(np.isnan(allowed), np.inf, err - allowed))
        flat = int(np.argmax(excess)) if excess.size else 0
        worst = np.unravel_index(flat, a.shape)
        return cls(bool((excess <= 0).all()), float(np.max(err)), float(np.nanmax(rel)), float(np.nanmax(ulp)),
                   tuple(int(i) for i in worst), float(af[worst]), float(e[worst]), int((nan_a ^ nan_e).sum()))


def verify_enabled(flag):
    """A call is verified when its optimizer says so or PYOPT_VERIFY=1 is set."""
    return bool(flag) or os.environ.get("PYOPT_VERIFY", "") not in ("", "0")


def _upcast(arrays):
    from pyopt.arrays import to_host

    return [None if a is None else np.array(to_host(a), dtype=np.float64) for a in arrays]


def reference_inputs(tensors):
    """float64 copies of one call's arrays, taken before the fast kernel writes."""
    from pyopt.arrays import TensorList

    return TensorList({role: _upcast(arrays) for role, arrays in tensors.roles.items()})


def compare_with_reference(spec, backend, tensors, copies, hparams, per_tensor):
    """Runs the reference on ``copies`` and raises VerifyError naming the op, backend, tensor, worst index and
    both values when an output of the fast call (``tensors``) differs beyond the tolerance table."""
    from pyopt.arrays import to_host
    from pyopt.optim.optimizer import reference_kernel

    with np.errstate(all="ignore"):
        reference_kernel(spec)(copies, hparams, per_tensor)
    rtol, atol = tolerance("optimizer", tensors.dtype)
    for role, arrays in tensors.roles.items():
        if role == "grad":
            continue
        for t, (fast, ref) in enumerate(zip(arrays, copies.roles[role])):
            if fast is None:
                continue
            c = Comparison.of(to_host(fast), ref, rtol, atol)
            if not c.ok:
                raise VerifyError(
                    f"{spec.op} on backend {backend!r} ({tensors.dtype}): {role} of tensor {t} differs from the "
                    f"float64 reference at index {c.worst_index}: got {c.actual!r}, reference {c.expected!r} "
                    f"(abs error {c.max_abs:.3e}, {c.max_ulp:.1f} ulp; tolerance rtol={rtol:g}, atol={atol:g})")


# ---- pyopt check: every op x backend x dtype against the float64 reference ----
CHECK_SIZES = [0, 1, 7, 1023, 278011, 17]  # an empty tensor inside the list, primes and non-multiples of 8/16
CHECK_CONFIGS = {
    "SGD": [dict(lr=0.1), dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True),
            dict(lr=0.05, momentum=0.8, dampening=0.3)],
    "Adagrad": [dict(), dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6)],
    # eps=1e-3 with weight decay: where decay cancels a gradient to ~eps, float32 and float64 legitimately part
    # ways (an ill-conditioned input, not a kernel error); random draws over 278011 elements land there
    "RMSprop": [dict(), dict(centered=True, momentum=0.9, weight_decay=0.01, eps=1e-3, maximize=True)],
    "Adam": [dict(), dict(weight_decay=0.05, amsgrad=True, maximize=True)],
    "AdamW": [dict(), dict(amsgrad=True, betas=(0.8, 0.95))],
}


@dataclass
class CheckRow:
    op: str
    config: dict
    backend: str
    dtype: str
    ok: bool
    max_abs: float
    max_rel: float
    max_ulp: float
    worst: str


def check_optimizer(cls_name, kwargs, backend, dtype, *, steps=3, seed=0):
    """Steps an optimizer on ``backend`` and compares every param and state buffer, after each step, with a float64
    reference step taken from the same state.  Returns a CheckRow with the worst errors seen."""
    import copy

    from pyopt import optim

    cls = getattr(optim, cls_name)
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(dtype) for n in CHECK_SIZES]
    opt = cls(params, backend=backend, **kwargs)
    rtol, atol = tolerance("optimizer", dtype)
    worst = Comparison(True, 0.0, 0.0, 0.0, (), 0.0, 0.0, 0)
    where = ""
    for step in range(steps):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        ref = cls([p.astype(np.float64) for p in params], backend="numpy", **kwargs)
        saved = copy.deepcopy(opt.state_dict())
        for entry in saved["state"].values():
            for key, value in entry.items():
                if isinstance(value, np.ndarray):
                    entry[key] = value.astype(np.float64)
        ref.load_state_dict(saved)
        ref.step([g.astype(np.float64) for g in grads])
        opt.step(grads)
        pairs = [(f"params[{k}]", a, b) for k, (a, b) in enumerate(zip(params, ref.param_groups[0]["params"]))]
        pairs += [(f"state[{i}][{r!r}]", buf, ref.state[i][r]) for i, s in opt.state.items() for r, buf in s.items()]
        for name, fast, expected in pairs:
            c = Comparison.of(fast, expected, rtol, atol)
            if _worse(c, worst):
                worst, where = c, f"step {step + 1} {name}{list(c.worst_index)}"
    return CheckRow(cls_name.lower(), kwargs, backend, np.dtype(dtype).name, worst.ok, worst.max_abs, worst.max_rel,
                    worst.max_ulp, where)


def _worse(c, worst):
    """A failing comparison outranks a passing one; among equals, more ULPs is worse."""
    return (not c.ok) if c.ok != worst.ok else c.max_ulp > worst.max_ulp


NORM_CHECK_SHAPES = {"layer_norm": [(0, 7), (1, 1023), (37, 129), (5, 3, 17)],
                     "rms_norm": [(0, 7), (1, 1023), (37, 129), (5, 3, 17)],
                     "batch_norm": [(2, 3, 5, 7), (13, 1, 4, 4), (8, 17), (4, 6, 0, 3)]}


def _norm_calls(op, x, dy, w, b, backend):
    """{output name: array} of one forward and one backward of ``op`` (training mode for BatchNorm)."""
    from pyopt import functional as F

    if op == "layer_norm":
        shape = x.shape[-1:]
        y, mean, rstd = F.layer_norm(x, shape, w, b, backend=backend)
        dx, dw, db = F.layer_norm_backward(dy, x, w, mean, rstd, shape, backend=backend)
        return dict(y=y, mean=mean, rstd=rstd, dx=dx, dweight=dw, dbias=db)
    if op == "rms_norm":
        shape = x.shape[-1:]
        y, rstd = F.rms_norm(x, shape, w, backend=backend)
        dx, dw = F.rms_norm_backward(dy, x, w, rstd, shape, backend=backend)
        return dict(y=y, rstd=rstd, dx=dx, dweight=dw)
    rm, rv = np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype)
    y, mean, rstd = F.batch_norm(x, w, b, rm, rv, training=True, backend=backend)
    dx, dw, db = F.batch_norm_backward(dy, x, w, mean, rstd, training=True, backend=backend)
    return dict(y=y, save_mean=mean, save_rstd=rstd, running_mean=rm, running_var=rv, dx=dx, dweight=dw, dbias=db)


def check_norm(op, backend, dtype, *, seed=0):
    """A norm's forward and backward on ``backend`` at awkward shapes, rows off-centre (1e3 + randn), against the
    float64 reference computed from the same rounded inputs."""
    rng = np.random.default_rng(seed)
    worst, where = Comparison(True, 0.0, 0.0, 0.0, (), 0.0, 0.0, 0), ""
    for shape in NORM_CHECK_SHAPES[op]:
        width = shape[1] if op == "batch_norm" else shape[-1]
        x = (1e3 + rng.standard_normal(shape)).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        w = (1 + 0.1 * rng.standard_normal(width)).astype(dtype)
        b = (0.1 * rng.standard_normal(width)).astype(dtype)
        fast = _norm_calls(op, x, dy, w, b, backend)
        ref = _norm_calls(op, *(a.astype(np.float64) for a in (x, dy, w, b)), "numpy")
        for name, value in fast.items():
            kind = "norm_backward" if name.startswith("d") else "norm_forward"
            c = Comparison.of(value, ref[name], *tolerance(kind, dtype))
            if _worse(c, worst):
                worst, where = c, f"{shape} {name}{list(c.worst_index)}"
    return CheckRow(op, {"forward+backward": "1e3 + randn rows"}, backend, np.dtype(dtype).name, worst.ok,
                    worst.max_abs, worst.max_rel, worst.max_ulp, where)


def check_all(ops=None, backend_names=None):
    """CheckRows for every optimizer op x config and norm op x available backend x dtype (filters: op and
    backend names)."""
    from pyopt import backends

    rows = []
    for op in NORM_CHECK_SHAPES:
        if ops and op not in ops:
            continue
        for backend in backends.runnable(op):
            if backend_names and backend not in backend_names:
                continue
            for dtype in (np.float32, np.float64):
                with np.errstate(all="ignore"):
                    rows.append(check_norm(op, backend, dtype))
    for cls_name, configs in CHECK_CONFIGS.items():
        op = cls_name.lower()
        if ops and op not in ops:
            continue
        spec_op = "adam" if op == "adamw" else op
        for backend in backends.runnable(spec_op):
            if backend_names and backend not in backend_names:
                continue
            for kwargs in configs:
                for dtype in (np.float32, np.float64):
                    rows.append(check_optimizer(cls_name, kwargs, backend, dtype))
    return rows

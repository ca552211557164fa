"""The ``numpy`` and ``c`` kernels of the norm ops, registered in :mod:`pyopt.backends`, and :func:`run`, which
makes one call (``pyopt.track`` counters, verify mode).

Every kernel receives checked arrays (:mod:`pyopt._norm_args`) by keyword: C-contiguous inputs already reshaped
to the kernel's view ((rows, features) for LayerNorm/RMSNorm, [outer][channels][inner] for BatchNorm), outputs of
the right shape and dtype, and writes the outputs in place.  float16 input runs the float32 C kernel on upcast
copies (statistics in float32, RELIABILITY.md row 25) and rounds the outputs once.
"""
import time

import numpy as np

from pyopt import _c, backends
from pyopt import reference as ref
from pyopt.track import _active as _tracking

F16 = np.dtype(np.float16)

# what each op writes, and the tolerance-table entry verify mode compares it with
OUTPUTS = {
    "layer_norm": (("y", "mean", "rstd"), "norm_forward"),
    "layer_norm_backward": (("dx", "dweight", "dbias"), "norm_backward"),
    "rms_norm": (("y", "rstd"), "norm_forward"),
    "rms_norm_backward": (("dx", "dweight"), "norm_backward"),
    "batch_norm": (("y", "save_mean", "save_rstd", "running_mean", "running_var"), "norm_forward"),
    "batch_norm_backward": (("dx", "dweight", "dbias"), "norm_backward"),
}


def run(op, backend, kernel, kwargs, nbytes):
    """One norm kernel call: timed for the active ``pyopt.track`` counters (``nbytes()``: the op's declared
    minimum bytes) and, in verify mode (``PYOPT_VERIFY=1``), shadowed by the float64 reference run on copies of its
    arguments taken before the call; a difference beyond the tolerance table raises ``pyopt.check.VerifyError``."""
    from pyopt import check

    # (verify mode compares host arrays: device calls, backend "cuda", are checked by the simulator tests and
    # bench/gpu_check.py instead)
    verify = backend not in ("numpy", "cuda") and check.verify_enabled(False)
    copies = _reference_arguments(op, kwargs) if verify else None
    if _tracking:
        t0 = time.perf_counter()
        kernel(**kwargs)
        seconds = time.perf_counter() - t0
        x = kwargs["x"]
        for tracker in list(_tracking):
            tracker.record(op, backend, x.dtype, x.size, nbytes(), seconds)
    else:
        kernel(**kwargs)
    if verify:
        _compare_with_reference(op, backend, kwargs, copies)


def _reference_arguments(op, kwargs):
    """float64 copies of the inputs and in-place state (running stats), fresh float64 arrays for the outputs."""
    outputs = set(OUTPUTS[op][0]) - {"running_mean", "running_var"}
    return {k: (np.empty(v.shape) if k in outputs else v.astype(np.float64)) if isinstance(v, np.ndarray) else v
            for k, v in kwargs.items()}


def _compare_with_reference(op, backend, kwargs, copies):
    from pyopt import check

    with np.errstate(all="ignore"):
        backends.select(op, "numpy")[1](**copies)
    names, kind = OUTPUTS[op]
    dtype = kwargs["x"].dtype
    rtol, atol = check.tolerance(kind, dtype)
    for name in names:
        if kwargs.get(name) is None:
            continue
        c = check.Comparison.of(kwargs[name], copies[name], rtol, atol)
        if not c.ok:
            raise check.VerifyError(
                f"{op} on backend {backend!r} ({dtype}): {name} differs from the float64 reference at index "
                f"{c.worst_index}: got {c.actual!r}, reference {c.expected!r} (abs error {c.max_abs:.3e}; "
                f"tolerance rtol={rtol:g}, atol={atol:g})")


def _fn(name, dtype):
    """The C entry point for ``dtype`` (float16 runs the float32 one on upcast copies)."""
    return getattr(_c.lib, f"pyopt_{name}_{'f64' if dtype == np.float64 else 'f32'}")


def _p(a, dtype):
    """A typed pointer to ``a`` (NULL for None); ``a`` must already be ``dtype`` (never reinterpreted)."""
    if a is None:
        return _c.ffi.NULL
    assert a.dtype == dtype and a.flags.c_contiguous
    return _c.ffi.from_buffer("double[]" if dtype == np.float64 else "float[]", a)


def _up(a):
    """float16 -> float32 copy (None stays None); other dtypes pass through."""
    return None if a is None else (a.astype(np.float32) if a.dtype == F16 else a)


def _compute(out):
    """The array the C kernel writes for an output: a float32 scratch for float16 outputs."""
    return np.empty(out.shape, np.float32) if out.dtype == F16 else out


def _copy_back(out, scratch):
    if scratch is not out:
        out[...] = scratch


# ---- LayerNorm ----

@backends.register("layer_norm", "numpy")
def layer_norm_numpy(x, weight, bias, eps, y, mean, rstd):
    y[...], mean[...], rstd[...] = ref.layer_norm(x, x.shape[1:], weight, bias, eps)


@backends.register("layer_norm", "c")
def layer_norm_c(x, weight, bias, eps, y, mean, rstd):
    xc, wc, bc, yc = _up(x), _up(weight), _up(bias), _compute(y)
    t = xc.dtype
    _c.check(_fn("layer_norm_forward", t)(x.shape[0], x.shape[1], _p(xc, t), _p(wc, t), _p(bc, t), eps,
                                          _p(yc, t), _p(mean, t), _p(rstd, t), _c.isa_code()), "layer_norm")
    _copy_back(y, yc)


@backends.register("layer_norm_backward", "numpy")
def layer_norm_backward_numpy(dy, x, weight, mean, rstd, dx, dweight, dbias):
    dx[...], dweight[...], dbias[...] = ref.layer_norm_backward(dy, x, weight, mean, rstd, x.shape[1:])


@backends.register("layer_norm_backward", "c")
def layer_norm_backward_c(dy, x, weight, mean, rstd, dx, dweight, dbias):
    dyc, xc, wc = _up(dy), _up(x), _up(weight)
    dxc, dwc, dbc = _compute(dx), _compute(dweight), _compute(dbias)
    t = xc.dtype
    _c.check(_fn("layer_norm_backward", t)(x.shape[0], x.shape[1], _p(dyc, t), _p(xc, t), _p(wc, t), _p(mean, t),
                                           _p(rstd, t), _p(dxc, t), _p(dwc, t), _p(dbc, t), _c.isa_code()),
             "layer_norm_backward")
    for out, scratch in ((dx, dxc), (dweight, dwc), (dbias, dbc)):
        _copy_back(out, scratch)


# ---- RMSNorm ----

@backends.register("rms_norm", "numpy")
def rms_norm_numpy(x, weight, eps, y, rstd):
    y[...], rstd[...] = ref.rms_norm(x, x.shape[1:], weight, eps)


@backends.register("rms_norm", "c")
def rms_norm_c(x, weight, eps, y, rstd):
    xc, wc, yc = _up(x), _up(weight), _compute(y)
    t = xc.dtype
    _c.check(_fn("rms_norm_forward", t)(x.shape[0], x.shape[1], _p(xc, t), _p(wc, t), eps, _p(yc, t),
                                        _p(rstd, t), _c.isa_code()), "rms_norm")
    _copy_back(y, yc)


@backends.register("rms_norm_backward", "numpy")
def rms_norm_backward_numpy(dy, x, weight, rstd, dx, dweight):
    dx[...], dweight[...] = ref.rms_norm_backward(dy, x, weight, rstd, x.shape[1:])


@backends.register("rms_norm_backward", "c")
def rms_norm_backward_c(dy, x, weight, rstd, dx, dweight):
    dyc, xc, wc, dxc, dwc = _up(dy), _up(x), _up(weight), _compute(dx), _compute(dweight)
    t = xc.dtype
    _c.check(_fn("rms_norm_backward", t)(x.shape[0], x.shape[1], _p(dyc, t), _p(xc, t), _p(wc, t), _p(rstd, t),
                                         _p(dxc, t), _p(dwc, t), _c.isa_code()), "rms_norm_backward")
    _copy_back(dx, dxc)
    _copy_back(dweight, dwc)


# ---- BatchNorm ----
# x, y, dy, dx arrive as [outer][channels][inner] arrays; momentum is the resolved factor of this batch.

@backends.register("batch_norm", "numpy")
def batch_norm_numpy(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps, y, save_mean,
                     save_rstd):
    y[...], save_mean[...], save_rstd[...] = ref.batch_norm(
        x, weight, bias, running_mean, running_var, training=use_batch_stats, momentum=momentum, eps=eps, axis=1)


@backends.register("batch_norm", "c")
def batch_norm_c(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps, y, save_mean,
                 save_rstd):
    xc, wc, bc, yc = _up(x), _up(weight), _up(bias), _compute(y)
    t = xc.dtype
    _c.check(_fn("batch_norm_forward", t)(*x.shape, _p(xc, t), _p(wc, t), _p(bc, t), _p(running_mean, t),
                                          _p(running_var, t), int(use_batch_stats), momentum, eps, _p(yc, t),
                                          _p(save_mean, t), _p(save_rstd, t), _c.isa_code()), "batch_norm")
    _copy_back(y, yc)


@backends.register("batch_norm_backward", "numpy")
def batch_norm_backward_numpy(dy, x, weight, save_mean, save_rstd, use_batch_stats, dx, dweight, dbias):
    dx[...], dweight[...], dbias[...] = ref.batch_norm_backward(dy, x, weight, save_mean, save_rstd,
                                                                training=use_batch_stats, axis=1)


@backends.register("batch_norm_backward", "c")
def batch_norm_backward_c(dy, x, weight, save_mean, save_rstd, use_batch_stats, dx, dweight, dbias):
    dyc, xc, wc = _up(dy), _up(x), _up(weight)
    dxc, dwc, dbc = _compute(dx), _compute(dweight), _compute(dbias)
    t = xc.dtype
    _c.check(_fn("batch_norm_backward", t)(*x.shape, _p(dyc, t), _p(xc, t), _p(wc, t), _p(save_mean, t),
                                           _p(save_rstd, t), int(use_batch_stats), _p(dxc, t), _p(dwc, t),
                                           _p(dbc, t), _c.isa_code()), "batch_norm_backward")
    for out, scratch in ((dx, dxc), (dweight, dwc), (dbias, dbc)):
        _copy_back(out, scratch)

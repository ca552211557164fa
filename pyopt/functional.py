"""Stateless one-call ops.  Optimizer steps work on one array or on lists of arrays (one kernel call per dtype)
and update params and state buffers in place; the caller owns the state and the step count."""
import numpy as np

from pyopt import backends
from pyopt.track import _active as _tracking
from pyopt.check import verify_enabled
from pyopt.optim.adagrad import ADAGRAD, check_adagrad_hparams
from pyopt.optim.adam import ADAM, check_adam_hparams
from pyopt.optim.rmsprop import RMSPROP, check_rmsprop_hparams, rmsprop_state_roles
from pyopt.optim.sgd import SGD_SPEC, check_sgd_hparams
from pyopt.optim.optimizer import as_array_list, prepare_tensor_lists, require


def _steps(step, n):
    """Per-tensor step counts (after this update) from an int or a sequence of ints."""
    steps = np.broadcast_to(np.asarray(step), (n,)) if np.ndim(step) == 0 else np.asarray(step)
    require(steps.shape == (n,), f"step must be an int or one int per tensor ({n}), got shape {steps.shape}")
    require(steps.dtype.kind in "iu" or (steps.dtype.kind == "f" and np.all(steps == np.round(steps))),
            f"step must hold whole numbers, got {step!r}")
    require(bool(np.all(steps >= 1)), f"step counts from 1 (the count after this update), got {step!r}")
    return steps.astype(np.int64)


def _flags(flag, n, name):
    """Per-tensor booleans from one bool or a sequence of them."""
    flags = np.asarray(flag)
    require(flags.dtype.kind == "b" or (flags.dtype.kind in "iu" and bool(np.all((flags == 0) | (flags == 1)))),
            f"{name} must be a bool or one bool per tensor, got {flag!r}")
    flags = np.broadcast_to(flags, (n,)) if flags.ndim == 0 else flags
    require(flags.shape == (n,), f"{name} must be a bool or one bool per tensor ({n}), got shape {flags.shape}")
    return flags.astype(bool)


def run_optimizer_op(spec, roles, hparams, per_tensor, backend):
    """Checks every array, then one kernel call per device and dtype."""
    roles = {role: as_array_list(arrays, role + "s") for role, arrays in roles.items() if arrays is not None}
    labels = {role: role + "s" for role in roles}
    parts = prepare_tensor_lists(roles, labels)
    n = len(roles["param"])
    per_tensor = {k: (v(n) if callable(v) else v) for k, v in per_tensor.items()}
    # every backend is chosen (and may raise) before the first kernel writes
    chosen = [backends.select(spec.op, backend, on_device=tensors.on_device) for _, tensors in parts]
    verify = verify_enabled(False)
    for (local, tensors), (name, kernel) in zip(parts, chosen):
        part = {k: v[local] for k, v in per_tensor.items()}
        if verify or _tracking:
            backends.instrumented_call(spec, name, kernel, tensors, hparams, part, verify)
        else:
            kernel(tensors, hparams, part)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, step, lr=1e-3, betas=(0.9, 0.999),
              eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=False,
              backend=None):
    """Adam on one tensor or a list (:mod:`pyopt.reference.adam` has the rule).  ``step``: count after this update."""
    hparams = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=bool(amsgrad),
                   maximize=bool(maximize), decoupled_weight_decay=bool(decoupled_weight_decay))
    check_adam_hparams(hparams)
    require(not amsgrad or max_exp_avg_sqs is not None, "amsgrad=True needs max_exp_avg_sqs")
    roles = dict(param=params, grad=grads, exp_avg=exp_avgs, exp_avg_sq=exp_avg_sqs,
                 max_exp_avg_sq=max_exp_avg_sqs if amsgrad else None)
    run_optimizer_op(ADAM, roles, hparams, {"step": lambda n: _steps(step, n)}, backend)


def adamw_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, step, lr=1e-3, betas=(0.9, 0.999),
               eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False, backend=None):
    """AdamW (decoupled weight decay) on one tensor or a list."""
    adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step=step, lr=lr, betas=betas, eps=eps,
              weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True,
              backend=backend)


def sgd_step(params, grads, momentum_buffers=None, *, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, first_step=False, backend=None):
    """SGD on one tensor or a list (:mod:`pyopt.reference.sgd` has the rule).

    ``momentum_buffers`` is required when ``momentum != 0`` (and ignored otherwise); ``first_step`` (a bool or
    one per tensor) says a buffer holds nothing yet and is set to the gradient, as PyTorch's first step does.
    """
    hparams = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                   nesterov=bool(nesterov), maximize=bool(maximize))
    check_sgd_hparams(hparams)
    require(momentum == 0 or momentum_buffers is not None, "momentum != 0 needs momentum_buffers")
    roles = dict(param=params, grad=grads, momentum_buffer=momentum_buffers if momentum != 0 else None)
    run_optimizer_op(SGD_SPEC, roles, hparams, {"first_step": lambda n: _flags(first_step, n, "first_step")},
                     backend)


def adagrad_step(params, grads, state_sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False, backend=None):
    """Adagrad on one tensor or a list (:mod:`pyopt.reference.adagrad` has the rule).  ``step``: count after this
    update, which sets the decayed learning rate ``lr / (1 + (step - 1) * lr_decay)``."""
    hparams = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, maximize=bool(maximize))
    check_adagrad_hparams(hparams)
    roles = dict(param=params, grad=grads, sum=state_sums)
    run_optimizer_op(ADAGRAD, roles, hparams, {"step": lambda n: _steps(step, n)}, backend)


def rmsprop_step(params, grads, square_avgs, grad_avgs=None, momentum_buffers=None, *, lr=1e-2, alpha=0.99,
                 eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False, backend=None):
    """RMSprop on one tensor or a list (:mod:`pyopt.reference.rmsprop` has the rule).  ``grad_avgs`` is required
    when centered, ``momentum_buffers`` when ``momentum > 0``; each is ignored otherwise."""
    hparams = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                   centered=bool(centered), maximize=bool(maximize))
    check_rmsprop_hparams(hparams)
    require(not centered or grad_avgs is not None, "centered=True needs grad_avgs")
    require(not momentum > 0 or momentum_buffers is not None, "momentum > 0 needs momentum_buffers")
    used = rmsprop_state_roles(hparams)
    roles = dict(param=params, grad=grads, square_avg=square_avgs,
                 grad_avg=grad_avgs if "grad_avg" in used else None,
                 momentum_buffer=momentum_buffers if "momentum_buffer" in used else None)
    run_optimizer_op(RMSPROP, roles, hparams, {}, backend)


# ---- norms: LayerNorm, RMSNorm, BatchNorm (rules: pyopt.reference.layer_norm / rms_norm / batch_norm) ----
# Every argument is checked before any kernel runs (pyopt._norm_args); outputs are allocated unless given.

from pyopt import _norm_args as _na  # noqa: E402
from pyopt import _norm_kernels as _nk  # noqa: E402  (also registers the norm kernels)
from pyopt.reference.batch_norm import bytes_moved as _bn_bytes  # noqa: E402
from pyopt.reference.layer_norm import bytes_moved as _ln_bytes  # noqa: E402
from pyopt.reference.rms_norm import bytes_moved as _rms_bytes  # noqa: E402


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, out=None, mean=None, rstd=None,
               backend=None):
    """LayerNorm over the trailing ``normalized_shape`` dimensions of ``x``: ``(y, mean, rstd)``.

    ``y = (x - mean) * rstd * weight + bias`` per row, biased variance, ``rstd = 1/sqrt(var + eps)``
    (:mod:`pyopt.reference.layer_norm`).  ``weight``/``bias``: None or arrays of shape ``normalized_shape`` and
    ``x``'s dtype.  ``out``, ``mean``, ``rstd``: optional preallocated outputs (``y``: x's shape and dtype;
    ``mean``/``rstd``: shape ``x.shape[:-len(normalized_shape)]``, x's dtype, float32 for float16 input).
    Statistics are accumulated in float64.  Non-contiguous inputs are copied.

    CUDA device arrays (torch CUDA tensors, CuPy arrays, Numba device arrays: anything with
    ``__cuda_array_interface__``) run on the ``cuda`` backend in place, without host copies; every array of the
    call must be on x's device, float32 or float64 and C-contiguous.  Fresh outputs are allocated on that device
    as x's kind: torch tensors for a torch x, CuPy arrays for CuPy, Numba device arrays otherwise
    (:func:`pyopt.arrays.empty_device`).  The same holds for every norm op below.
    """
    x_in = x
    x = _na.check_array(x, "x", device=True)
    device = not isinstance(x, np.ndarray)
    if device:
        _na.check_devices(x_in, [("weight", weight), ("bias", bias), ("out", out), ("mean", mean), ("rstd", rstd)])
    shape = _na.check_normalized_shape(normalized_shape, x)
    weight_in, bias_in = weight, bias
    weight = _na.check_param(weight, "weight", shape, x.dtype, "normalized_shape", device)
    bias = _na.check_param(bias, "bias", shape, x.dtype, "normalized_shape", device)
    eps = _na.check_eps(eps)
    lead, sd = x.shape[:x.ndim - len(shape)], _na.stat_dtype(x.dtype)
    y = _na.check_output(out, "out", x.shape, x.dtype, x)
    mean = _na.check_output(mean, "mean", lead, sd, x)
    rstd = _na.check_output(rstd, "rstd", lead, sd, x)
    _na.check_no_alias([("out", y), ("mean", mean), ("rstd", rstd)],
                       [("x", x_in), ("weight", weight_in), ("bias", bias_in)])
    name, kernel = backends.select("layer_norm", backend, on_device=device)
    if _na.numel(mean):
        x2 = _na.rows_view(x, shape)
        _nk.run("layer_norm", name, kernel,
                dict(x=x2, weight=weight, bias=bias, eps=eps, y=_na.rows_view(y, shape), mean=_na.flat(mean),
                     rstd=_na.flat(rstd)),
                lambda: _ln_bytes(*x2.shape, x.itemsize, weight=weight is not None, bias=bias is not None))
    return y, mean, rstd


def layer_norm_backward(dy, x, weight, mean, rstd, normalized_shape, *, out=None, dweight=None, dbias=None,
                        backend=None):
    """Gradients of :func:`layer_norm`: ``(dx, dweight, dbias)``.

    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` with ``g = dy * weight``, ``xhat = (x - mean) * rstd``;
    ``dweight = sum(dy * xhat)``, ``dbias = sum(dy)`` over the leading dimensions (returned also when the forward
    had no weight or bias).  ``mean``/``rstd``: as :func:`layer_norm` returned them.  ``out`` (dx), ``dweight``,
    ``dbias``: optional preallocated outputs.  Deterministic: bitwise the same for any thread count.
    """
    originals = [("dy", dy), ("x", x), ("weight", weight), ("mean", mean), ("rstd", rstd)]
    x_in, x = x, _na.check_array(x, "x", device=True)
    device = not isinstance(x, np.ndarray)
    if device:
        _na.check_devices(x_in, originals + [("out", out), ("dweight", dweight), ("dbias", dbias)])
    dy = _na.check_array(dy, "dy", dtype=x.dtype, device=device)
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {dy.shape} but x has shape {x.shape}")
    shape = _na.check_normalized_shape(normalized_shape, x)
    weight = _na.check_param(weight, "weight", shape, x.dtype, "normalized_shape", device)
    lead, sd = x.shape[:x.ndim - len(shape)], _na.stat_dtype(x.dtype)
    if mean is None or rstd is None:
        raise TypeError("layer_norm_backward needs the mean and rstd that layer_norm returned")
    mean = _na.check_param(mean, "mean", lead, sd, "x's leading shape", device)
    rstd = _na.check_param(rstd, "rstd", lead, sd, "x's leading shape", device)
    dx = _na.check_output(out, "out", x.shape, x.dtype, x)
    dweight = _na.check_output(dweight, "dweight", shape, x.dtype, x)
    dbias = _na.check_output(dbias, "dbias", shape, x.dtype, x)
    _na.check_no_alias([("out", dx), ("dweight", dweight), ("dbias", dbias)], originals)
    name, kernel = backends.select("layer_norm_backward", backend, on_device=device)
    x2 = _na.rows_view(x, shape)
    _nk.run("layer_norm_backward", name, kernel,
            dict(dy=_na.rows_view(dy, shape), x=x2, weight=weight, mean=_na.flat(mean), rstd=_na.flat(rstd),
                 dx=_na.rows_view(dx, shape), dweight=_na.flat(dweight), dbias=_na.flat(dbias)),
            lambda: _ln_bytes(*x2.shape, x.itemsize, which="backward", weight=weight is not None))
    return dx, dweight, dbias


def rms_norm(x, normalized_shape, weight=None, eps=None, *, out=None, rstd=None, backend=None):
    """RMSNorm over the trailing ``normalized_shape`` dimensions: ``(y, rstd)``.

    ``y = x * rstd * weight`` with ``rstd = 1/sqrt(mean(x^2) + eps)`` (:mod:`pyopt.reference.rms_norm`);
    ``eps=None`` is ``numpy.finfo(x.dtype).eps`` as in ``torch.nn.functional.rms_norm``.  ``out``/``rstd``:
    optional preallocated outputs.
    """
    x_in, weight_in = x, weight
    x = _na.check_array(x, "x", device=True)
    device = not isinstance(x, np.ndarray)
    if device:
        _na.check_devices(x_in, [("weight", weight), ("out", out), ("rstd", rstd)])
    shape = _na.check_normalized_shape(normalized_shape, x)
    weight = _na.check_param(weight, "weight", shape, x.dtype, "normalized_shape", device)
    eps = float(np.finfo(x.dtype).eps) if eps is None else _na.check_eps(eps)
    lead, sd = x.shape[:x.ndim - len(shape)], _na.stat_dtype(x.dtype)
    y = _na.check_output(out, "out", x.shape, x.dtype, x)
    rstd = _na.check_output(rstd, "rstd", lead, sd, x)
    _na.check_no_alias([("out", y), ("rstd", rstd)], [("x", x_in), ("weight", weight_in)])
    name, kernel = backends.select("rms_norm", backend, on_device=device)
    if _na.numel(rstd):
        x2 = _na.rows_view(x, shape)
        _nk.run("rms_norm", name, kernel,
                dict(x=x2, weight=weight, eps=eps, y=_na.rows_view(y, shape), rstd=_na.flat(rstd)),
                lambda: _rms_bytes(*x2.shape, x.itemsize, weight=weight is not None))
    return y, rstd


def rms_norm_backward(dy, x, weight, rstd, normalized_shape, *, out=None, dweight=None, backend=None):
    """Gradients of :func:`rms_norm`: ``(dx, dweight)``.

    ``dx = rstd * (g - xhat * mean(g * xhat))`` with ``g = dy * weight``, ``xhat = x * rstd``;
    ``dweight = sum(dy * xhat)`` over the leading dimensions.  Deterministic for any thread count.
    """
    originals = [("dy", dy), ("x", x), ("weight", weight), ("rstd", rstd)]
    x_in, x = x, _na.check_array(x, "x", device=True)
    device = not isinstance(x, np.ndarray)
    if device:
        _na.check_devices(x_in, originals + [("out", out), ("dweight", dweight)])
    dy = _na.check_array(dy, "dy", dtype=x.dtype, device=device)
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {dy.shape} but x has shape {x.shape}")
    shape = _na.check_normalized_shape(normalized_shape, x)
    weight = _na.check_param(weight, "weight", shape, x.dtype, "normalized_shape", device)
    lead, sd = x.shape[:x.ndim - len(shape)], _na.stat_dtype(x.dtype)
    if rstd is None:
        raise TypeError("rms_norm_backward needs the rstd that rms_norm returned")
    rstd = _na.check_param(rstd, "rstd", lead, sd, "x's leading shape", device)
    dx = _na.check_output(out, "out", x.shape, x.dtype, x)
    dweight = _na.check_output(dweight, "dweight", shape, x.dtype, x)
    _na.check_no_alias([("out", dx), ("dweight", dweight)], originals)
    name, kernel = backends.select("rms_norm_backward", backend, on_device=device)
    x2 = _na.rows_view(x, shape)
    _nk.run("rms_norm_backward", name, kernel,
            dict(dy=_na.rows_view(dy, shape), x=x2, weight=weight, rstd=_na.flat(rstd), dx=_na.rows_view(dx, shape),
                 dweight=_na.flat(dweight)),
            lambda: _rms_bytes(*x2.shape, x.itemsize, which="backward", weight=weight is not None))
    return dx, dweight


def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, *, training=False, momentum=0.1,
               eps=1e-5, axis=1, num_batches_tracked=None, out=None, save_mean=None, save_rstd=None,
               backend=None):
    """BatchNorm with channels along ``axis`` (1: NCHW, -1: channels-last): ``(y, save_mean, save_rstd)``.

    Training (or no running stats): normalize with the batch's mean and biased variance and, with running stats
    and ``training``, update them in place, ``running_mean = m * mean + (1 - m) * running_mean`` and the same
    with the unbiased variance for ``running_var`` (:mod:`pyopt.reference.batch_norm`).  ``momentum=None``:
    cumulative average, ``m = 1/num_batches_tracked``; ``num_batches_tracked`` (a one-element integer array,
    PyTorch's buffer) is incremented in place whenever the running stats are updated.  Eval: normalize with the
    running stats; ``save_mean``/``save_rstd`` are then the running mean and ``1/sqrt(running_var + eps)``.
    A batch with 0 values per channel gives an empty ``y``, NaN save_mean/save_rstd and changes nothing else.
    An x whose channel axis is innermost in memory (PyTorch's channels_last) is used in place and ``y`` gets the
    same layout; ``out`` must then have it too.
    """
    _na.check_dtype(x, "x", device=True)
    axis = _na.check_axis(axis, x)
    layout = _na.ChannelLayout(x, axis)
    device = layout.device is not None
    if device:
        _na.check_devices(x, [("weight", weight), ("bias", bias), ("running_mean", running_mean),
                              ("running_var", running_var), ("out", out), ("save_mean", save_mean),
                              ("save_rstd", save_rstd)])
    C, sd, dtype = layout.channels, _na.stat_dtype(layout.dtype), layout.dtype
    w = _na.check_param(weight, "weight", (C,), dtype, "the channel count", device)
    b = _na.check_param(bias, "bias", (C,), dtype, "the channel count", device)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or both None)")
    running_mean = _na.check_state(running_mean, "running_mean", (C,), sd, device)
    running_var = _na.check_state(running_var, "running_var", (C,), sd, device)
    momentum = _na.check_momentum(momentum)
    eps = _na.check_eps(eps)
    counter = _na.check_counter(num_batches_tracked)
    use_batch_stats = bool(training) or running_mean is None
    update = bool(training) and running_mean is not None
    if update and momentum is None and counter is None:
        raise ValueError("momentum=None (a cumulative average) needs the num_batches_tracked counter")
    if training and layout.count == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {layout.shape}")
    xw = layout.work(x, "x")
    y, yw = layout.output(out, "out")
    save_mean = _na.check_output(save_mean, "save_mean", (C,), sd, x)
    save_rstd = _na.check_output(save_rstd, "save_rstd", (C,), sd, x)
    _na.check_no_alias([("out", y), ("save_mean", save_mean), ("save_rstd", save_rstd),
                        ("running_mean", running_mean), ("running_var", running_var),
                        ("num_batches_tracked", counter)], [("x", x), ("weight", weight), ("bias", bias)])
    name, kernel = backends.select("batch_norm", backend, on_device=device)
    if layout.count == 0 and not device:  # PyTorch #12013: an empty batch has no statistics and updates nothing
        if use_batch_stats:
            save_mean[...], save_rstd[...] = np.nan, np.nan
        else:
            save_mean[...], save_rstd[...] = running_mean, 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
        return y, save_mean, save_rstd
    update = update and layout.count > 0  # (the cuda kernels take empty batches: NaN statistics, no update)
    factor = 0.0
    if update:
        factor = momentum if momentum is not None else 1.0 / (int(counter.reshape(-1)[0]) + 1)
    rm, rv = (None, None) if use_batch_stats and not update else (running_mean, running_var)
    _nk.run("batch_norm", name, kernel,
            dict(x=xw.reshape(layout.dims()), weight=w, bias=b, running_mean=rm, running_var=rv,
                 use_batch_stats=use_batch_stats, momentum=factor, eps=eps, y=yw.reshape(layout.dims()),
                 save_mean=_na.kernel_view(save_mean), save_rstd=_na.kernel_view(save_rstd)),
            lambda: _bn_bytes(_na.numel(x), C, dtype.itemsize, training=use_batch_stats, weight=w is not None,
                                        bias=b is not None, running_stats=rm is not None or not use_batch_stats))
    if update and counter is not None:
        counter += 1
    return y, save_mean, save_rstd


def batch_norm_backward(dy, x, weight, save_mean, save_rstd, *, training=True, axis=1, out=None, dweight=None,
                        dbias=None, backend=None):
    """Gradients of :func:`batch_norm`: ``(dx, dweight, dbias)``.

    ``training=True`` when the forward normalized with batch statistics (training, or eval without running
    stats): ``dx = weight * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))``; else ``dx = weight * rstd * dy``.
    ``dweight = sum(dy * xhat)``, ``dbias = sum(dy)`` per channel.  ``dx`` has x's memory layout.
    """
    originals = [("dy", dy), ("x", x), ("weight", weight), ("save_mean", save_mean), ("save_rstd", save_rstd)]
    _na.check_dtype(x, "x", device=True)
    axis = _na.check_axis(axis, x)
    layout = _na.ChannelLayout(x, axis)
    device = layout.device is not None
    if device:
        _na.check_devices(x, originals + [("out", out), ("dweight", dweight), ("dbias", dbias)])
    C, sd, dtype = layout.channels, _na.stat_dtype(layout.dtype), layout.dtype
    weight = _na.check_param(weight, "weight", (C,), dtype, "the channel count", device)
    if save_mean is None or save_rstd is None:
        raise TypeError("batch_norm_backward needs the save_mean and save_rstd that batch_norm returned")
    save_mean = _na.check_param(save_mean, "save_mean", (C,), sd, "the channel count", device)
    save_rstd = _na.check_param(save_rstd, "save_rstd", (C,), sd, "the channel count", device)
    xw, dyw = layout.work(x, "x"), layout.work(dy, "dy")
    dx, dxw = layout.output(out, "out")
    dweight = _na.check_output(dweight, "dweight", (C,), dtype, x)
    dbias = _na.check_output(dbias, "dbias", (C,), dtype, x)
    _na.check_no_alias([("out", dx), ("dweight", dweight), ("dbias", dbias)], originals)
    name, kernel = backends.select("batch_norm_backward", backend, on_device=device)
    _nk.run("batch_norm_backward", name, kernel,
            dict(dy=dyw.reshape(layout.dims()), x=xw.reshape(layout.dims()), weight=weight, save_mean=save_mean,
                 save_rstd=save_rstd, use_batch_stats=bool(training), dx=dxw.reshape(layout.dims()),
                 dweight=_na.kernel_view(dweight), dbias=_na.kernel_view(dbias)),
            lambda: _bn_bytes(_na.numel(x), C, dtype.itemsize, which="backward", training=bool(training),
                                        weight=weight is not None))
    return dx, dweight, dbias

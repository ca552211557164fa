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

"""Stateless one-call ops.  Optimizer steps work on one array or on lists of arrays (one kernel call per dtype)
and update params and state buffers in place; the caller owns the state and the step count."""
import numpy as np

from pyopt import backends
from pyopt.optim.adam import ADAM, check_adam_hparams
from pyopt.optim.optimizer import as_array_list, prepare_tensor_lists, require


def _steps(step, n):
    """Per-tensor step counts (after this update) from an int or a sequence of ints."""
    steps = np.broadcast_to(np.asarray(step), (n,)) if np.ndim(step) == 0 else np.asarray(step)
    require(steps.shape == (n,), f"step must be an int or one int per tensor ({n}), got shape {steps.shape}")
    require(steps.dtype.kind in "iu" or (steps.dtype.kind == "f" and np.all(steps == np.round(steps))),
            f"step must hold whole numbers, got {step!r}")
    require(bool(np.all(steps >= 1)), f"step counts from 1 (the count after this update), got {step!r}")
    return steps.astype(np.int64)


def run_optimizer_op(spec, roles, hparams, per_tensor, backend):
    """Checks every array, then one kernel call per device and dtype."""
    roles = {role: as_array_list(arrays, role + "s") for role, arrays in roles.items() if arrays is not None}
    labels = {role: role + "s" for role in roles}
    parts = prepare_tensor_lists(roles, labels)
    n = len(roles["param"])
    per_tensor = {k: (v(n) if callable(v) else v) for k, v in per_tensor.items()}
    # every backend is chosen (and may raise) before the first kernel writes
    kernels = [backends.select(spec.op, backend, on_device=tensors.on_device)[1] for _, tensors in parts]
    for (local, tensors), kernel in zip(parts, kernels):
        kernel(tensors, hparams, {k: v[local] for k, v in per_tensor.items()})


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

"""Adam and AdamW (rule and docs: :mod:`pyopt.reference.adam`; C kernel: ``csrc/adam.c``)."""
import numpy as np

from pyopt import _c, backends
from pyopt import reference
from pyopt.optim.optimizer import OpSpec, Optimizer, check_hparam, per_step_scalars, reference_kernel, require
from pyopt.reference.adam import bias_corrections, bytes_moved

ADAM = OpSpec(op="adam", state_roles=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
              reference=reference.adam_step, bytes_moved=bytes_moved)

backends.register("adam", "numpy")(reference_kernel(ADAM))


@backends.register("adam", "c")
def adam_c(tensors, hparams, per_tensor):
    call = tensors.prepared(hparams, lambda: _prepare_adam_c(tensors, hparams))
    call(per_tensor["step"])


def _prepare_adam_c(tensors, hparams):
    """Everything of one Adam call that does not depend on the step: the struct, the tables, the entry point."""
    beta1, beta2 = hparams["betas"]
    lr, weight_decay = hparams["lr"], hparams["weight_decay"]
    if weight_decay == 0:
        decay = _c.lib.PYOPT_DECAY_NONE
    else:
        decay = _c.lib.PYOPT_DECAY_DECOUPLED if hparams["decoupled_weight_decay"] else _c.lib.PYOPT_DECAY_L2
    hp = _c.ffi.new("pyopt_adam_hparams *", {
        "beta1": beta1, "beta2": beta2, "eps": hparams["eps"], "weight_decay": weight_decay,
        "decay_factor": 1 - lr * weight_decay, "decay": decay, "amsgrad": bool(hparams["amsgrad"]),
        "maximize": bool(hparams["maximize"])})
    fn = _c.lib.pyopt_adam_step_f32 if tensors.dtype == np.float32 else _c.lib.pyopt_adam_step_f64
    args = (tensors.n, tensors.table("param"), tensors.table("grad"), tensors.table("exp_avg"),
            tensors.table("exp_avg_sq"), tensors.table("max_exp_avg_sq"), tensors.numel_table())

    scalars = (np.empty(tensors.n), np.empty(tensors.n))  # step_size, bias_correction2_sqrt per tensor
    scalar_tables = tuple(_c.doubles(a) for a in scalars)

    def call(steps):
        per_step_scalars(lambda s: bias_corrections(lr, beta1, beta2, s), steps, scalars)
        _c.check(fn(*args, *scalar_tables, hp, _c.isa_code()), "adam")

    return call


def check_adam_hparams(group):
    check_hparam("lr", group["lr"], label="learning rate")
    check_hparam("eps", group["eps"], label="epsilon value")
    betas = group["betas"]
    require(isinstance(betas, (tuple, list)) and len(betas) == 2, f"betas must be a pair, got {betas!r}")
    for i, beta in enumerate(betas):
        check_hparam(f"betas[{i}]", beta, high=1.0, label=f"beta parameter at index {i}")
    check_hparam("weight_decay", group["weight_decay"], label="weight_decay value")


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``'s arguments and defaults; L2 weight decay unless decoupled_weight_decay)."""

    spec = ADAM

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, backend=None, verify=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults, backend=backend, verify=verify)

    def check_hparams(self, group):
        check_adam_hparams(group)

    def group_hparams(self, group):
        return dict(lr=float(group["lr"]), betas=(float(group["betas"][0]), float(group["betas"][1])),
                    eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                    amsgrad=bool(group["amsgrad"]), maximize=bool(group["maximize"]),
                    decoupled_weight_decay=bool(group["decoupled_weight_decay"]))

    def state_roles(self, hparams):
        return ADAM.state_roles if hparams["amsgrad"] else ADAM.state_roles[:2]


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (``torch.optim.AdamW``; default ``weight_decay=1e-2``)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, backend=None, verify=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True, backend=backend, verify=verify)

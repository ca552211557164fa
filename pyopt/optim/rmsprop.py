"""RMSprop (rule and docs: :mod:`pyopt.reference.rmsprop`; C kernel: ``csrc/rmsprop.c``)."""
import numpy as np

from pyopt import _c, backends
from pyopt import reference
from pyopt.optim.optimizer import OpSpec, Optimizer, check_hparam, reference_kernel
from pyopt.reference.rmsprop import bytes_moved

# kernel-argument order, which is also the reference's positional order after param and grad
RMSPROP = OpSpec(op="rmsprop", state_roles=("square_avg", "grad_avg", "momentum_buffer"),
                 reference=reference.rmsprop_step, bytes_moved=bytes_moved)

backends.register("rmsprop", "numpy")(reference_kernel(RMSPROP))


@backends.register("rmsprop", "c")
def rmsprop_c(tensors, hparams, per_tensor):
    args = tensors.prepared(hparams, lambda: _prepare_rmsprop_c(tensors, hparams))
    _c.check(args[0](*args[1:], _c.isa_code()), "rmsprop")


def _prepare_rmsprop_c(tensors, hparams):
    """The entry point and its arguments, less the ISA; nothing of RMSprop depends on the step."""
    hp = _c.ffi.new("pyopt_rmsprop_hparams *", {
        "lr": hparams["lr"], "alpha": hparams["alpha"], "eps": hparams["eps"],
        "weight_decay": hparams["weight_decay"], "momentum": hparams["momentum"],
        "centered": bool(hparams["centered"]), "maximize": bool(hparams["maximize"])})
    fn = _c.lib.pyopt_rmsprop_step_f32 if tensors.dtype == np.float32 else _c.lib.pyopt_rmsprop_step_f64
    return (fn, tensors.n, tensors.table("param"), tensors.table("grad"), tensors.table("square_avg"),
            tensors.table("grad_avg"), tensors.table("momentum_buffer"), tensors.numel_table(), hp)


def check_rmsprop_hparams(group):
    """torch.optim.RMSprop's checks, order and messages, plus finiteness."""
    check_hparam("lr", group["lr"], label="learning rate")
    check_hparam("eps", group["eps"], label="epsilon value")
    check_hparam("momentum", group["momentum"], label="momentum value")
    check_hparam("weight_decay", group["weight_decay"], label="weight_decay value")
    check_hparam("alpha", group["alpha"], label="alpha value")


def rmsprop_state_roles(hparams):
    return (("square_avg",) + (("grad_avg",) if hparams["centered"] else ())
            + (("momentum_buffer",) if hparams["momentum"] > 0 else ()))


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop``'s arguments and defaults).

    State per param: ``step``, ``square_avg``, ``momentum_buffer`` (zeros, only if momentum > 0) and
    ``grad_avg`` (only if centered).  torch's ``capturable``/``foreach``/``differentiable`` choose among its own
    implementations and have no counterpart here, so ``maximize`` is keyword-only.
    """

    spec = RMSPROP

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False, backend=None, verify=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults, backend=backend, verify=verify)

    def check_hparams(self, group):
        check_rmsprop_hparams(group)

    def group_hparams(self, group):
        return dict(lr=float(group["lr"]), alpha=float(group["alpha"]), eps=float(group["eps"]),
                    weight_decay=float(group["weight_decay"]), momentum=float(group["momentum"]),
                    centered=bool(group["centered"]), maximize=bool(group["maximize"]))

    def state_roles(self, hparams):
        return rmsprop_state_roles(hparams)

    def per_tensor(self, indices, hparams, steps):
        # the step is counted (torch keeps it in the state) but the rule does not depend on it
        return {}

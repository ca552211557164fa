"""Adagrad (rule and docs: :mod:`pyopt.reference.adagrad`; C kernel: ``csrc/adagrad.c``)."""
import numpy as np

from pyopt import _c, backends
from pyopt.arrays import full_like
from pyopt import reference
from pyopt.optim.optimizer import OpSpec, Optimizer, check_hparam, per_step_scalars, reference_kernel
from pyopt.reference.adagrad import bytes_moved, clr

ADAGRAD = OpSpec(op="adagrad", state_roles=("sum",), reference=reference.adagrad_step, bytes_moved=bytes_moved)

backends.register("adagrad", "numpy")(reference_kernel(ADAGRAD))


@backends.register("adagrad", "c")
def adagrad_c(tensors, hparams, per_tensor):
    call = tensors.prepared(hparams, lambda: _prepare_adagrad_c(tensors, hparams))
    call(per_tensor["step"])


def _prepare_adagrad_c(tensors, hparams):
    """Everything of one Adagrad call that does not depend on the step: the struct, the tables, the entry point."""
    lr, lr_decay = hparams["lr"], hparams["lr_decay"]
    hp = _c.ffi.new("pyopt_adagrad_hparams *", {
        "weight_decay": hparams["weight_decay"], "eps": hparams["eps"], "maximize": bool(hparams["maximize"])})
    fn = _c.lib.pyopt_adagrad_step_f32 if tensors.dtype == np.float32 else _c.lib.pyopt_adagrad_step_f64
    args = (tensors.n, tensors.table("param"), tensors.table("grad"), tensors.table("sum"), tensors.numel_table())
    clrs = np.empty(tensors.n)  # each tensor's decayed learning rate this step
    clr_table = _c.doubles(clrs)

    def call(steps):
        per_step_scalars(lambda s: (clr(lr, lr_decay, s),), steps, (clrs,))
        _c.check(fn(*args, clr_table, hp, _c.isa_code()), "adagrad")

    return call


def check_adagrad_hparams(group):
    """torch.optim.Adagrad's checks, order and messages, plus finiteness.  ``initial_accumulator_value`` is
    checked when present (the functional step has none: the caller owns the accumulator)."""
    check_hparam("lr", group["lr"], label="learning rate")
    check_hparam("lr_decay", group["lr_decay"], label="lr_decay value")
    check_hparam("weight_decay", group["weight_decay"], label="weight_decay value")
    if "initial_accumulator_value" in group:
        check_hparam("initial_accumulator_value", group["initial_accumulator_value"],
                     label="initial_accumulator_value value")
    check_hparam("eps", group["eps"], label="epsilon value")


class Adagrad(Optimizer):
    """Adagrad (``torch.optim.Adagrad``'s arguments and defaults; dense gradients).

    State per param: ``step`` and ``sum``, which starts at the group's ``initial_accumulator_value``.
    """

    spec = ADAGRAD

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 *, maximize=False, backend=None, verify=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)
        super().__init__(params, defaults, backend=backend, verify=verify)

    def check_hparams(self, group):
        check_adagrad_hparams(group)

    def group_hparams(self, group):
        return dict(lr=float(group["lr"]), lr_decay=float(group["lr_decay"]),
                    weight_decay=float(group["weight_decay"]), eps=float(group["eps"]),
                    maximize=bool(group["maximize"]))

    def init_state(self, role, param, group):
        return full_like(param, group["initial_accumulator_value"])  # on the param's device

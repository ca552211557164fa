"""SGD with momentum (rule and docs: :mod:`pyopt.reference.sgd`; C kernel: ``csrc/sgd.c``)."""
import numpy as np

from pyopt import _c, backends
from pyopt import reference
from pyopt.optim.optimizer import OpSpec, Optimizer, check_hparam, reference_kernel, require
from pyopt.reference.sgd import bytes_moved

# named *_SPEC because SGD is the class; torch.optim.SGD keeps no step count, so neither does this
SGD_SPEC = OpSpec(op="sgd", state_roles=("momentum_buffer",), reference=reference.sgd_step,
                  bytes_moved=bytes_moved, has_step=False)

backends.register("sgd", "numpy")(reference_kernel(SGD_SPEC))


@backends.register("sgd", "c")
def sgd_c(tensors, hparams, per_tensor):
    call = tensors.prepared(hparams, lambda: _prepare_sgd_c(tensors, hparams))
    call(per_tensor.get("first_step"))


def _prepare_sgd_c(tensors, hparams):
    """Everything of one SGD call that does not change between steps: the struct, the tables, the entry point."""
    hp = _c.ffi.new("pyopt_sgd_hparams *", {
        "lr": hparams["lr"], "momentum": hparams["momentum"], "dampening": hparams["dampening"],
        "weight_decay": hparams["weight_decay"], "nesterov": bool(hparams["nesterov"]),
        "maximize": bool(hparams["maximize"])})
    fn = _c.lib.pyopt_sgd_step_f32 if tensors.dtype == np.float32 else _c.lib.pyopt_sgd_step_f64
    args = (tensors.n, tensors.table("param"), tensors.table("grad"), tensors.table("momentum_buffer"),
            tensors.numel_table())
    first = np.zeros(tensors.n, np.uint8)  # per tensor: its buffer is set to the gradient, not read
    first_table = _c.ffi.from_buffer("uint8_t[]", first)

    def call(first_step):
        first[...] = 0 if first_step is None else first_step
        _c.check(fn(*args, first_table, hp, _c.isa_code()), "sgd")

    return call


def check_sgd_hparams(group):
    """torch.optim.SGD's checks and messages, plus finiteness (RELIABILITY.md rows 1, 2 and 4)."""
    check_hparam("lr", group["lr"], label="learning rate")
    check_hparam("momentum", group["momentum"], label="momentum value")
    # torch does not check dampening at all; any finite value is a valid (if odd) rule
    check_hparam("dampening", group["dampening"], low=-np.inf, label="dampening value")
    check_hparam("weight_decay", group["weight_decay"], label="weight_decay value")
    require(not group["nesterov"] or (group["momentum"] > 0 and group["dampening"] == 0),
            "Nesterov momentum requires a momentum and zero dampening")


class SGD(Optimizer):
    """SGD (``torch.optim.SGD``'s arguments and defaults, ``lr=1e-3`` as in torch 2.13).

    The momentum buffer exists only while ``momentum != 0``; a param's first momentum step sets it to the
    gradient (PyTorch's ``clone``), so which buffers hold a value is tracked per param.
    """

    spec = SGD_SPEC

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, backend=None, verify=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults, backend=backend, verify=verify)

    def check_hparams(self, group):
        check_sgd_hparams(group)

    def group_hparams(self, group):
        return dict(lr=float(group["lr"]), momentum=float(group["momentum"]), dampening=float(group["dampening"]),
                    weight_decay=float(group["weight_decay"]), nesterov=bool(group["nesterov"]),
                    maximize=bool(group["maximize"]))

    def state_roles(self, hparams):
        return SGD_SPEC.state_roles if hparams["momentum"] != 0 else ()

    def _filled_flags(self):
        """One flag per param: its momentum buffer holds a value (grown when groups are added)."""
        filled = getattr(self, "_filled", None)
        if filled is None or filled.size < self._steps.size:
            grown = np.zeros(self._steps.size, dtype=bool)
            if filled is not None:
                grown[:filled.size] = filled
            self._filled = filled = grown
        return filled

    def per_tensor(self, indices, hparams, steps):
        # a step without momentum fills no buffer, and a buffer created later starts as a clone of the gradient
        # (indices may be a slice: the base passes runs of consecutive params that way)
        filled = self._filled_flags()[indices]
        return {"first_step": ~filled if hparams["momentum"] != 0 else np.zeros_like(filled)}

    def after_step(self, indices, hparams):
        if hparams["momentum"] != 0:
            self._filled_flags()[indices] = True

    def after_load(self):
        # PyTorch's rule: a param whose state has a momentum buffer continues from it
        filled = np.zeros(self._steps.size, dtype=bool)
        for index, buffers in self.state.items():
            filled[index] = "momentum_buffer" in buffers
        self._filled = filled

"""The table the optimizer tests run over: each family's class and the hyper-parameter combinations that
exercise every mode flag.  Adding a family here puts it through every table-driven test."""
from dataclasses import dataclass, field

import pyopt


@dataclass
class Family:
    cls: type
    configs: list = field(default_factory=list)      # constructor kwargs, one per mode combination
    converge: dict = field(default_factory=dict)     # kwargs that converge on the quadratic and Rosenbrock tests
    torch_name: str = ""                              # torch.optim class of the same rule


FAMILIES = {
    "adam": Family(
        pyopt.optim.Adam,
        configs=[dict(), dict(lr=1e-2, weight_decay=0.1), dict(amsgrad=True), dict(maximize=True),
                 dict(lr=3e-3, weight_decay=0.05, amsgrad=True, maximize=True), dict(betas=(0.3, 0.5), eps=1e-3),
                 dict(weight_decay=0.1, decoupled_weight_decay=True)],
        converge=dict(lr=0.05),
        torch_name="Adam"),
    "adamw": Family(
        pyopt.optim.AdamW,
        configs=[dict(), dict(weight_decay=0.0), dict(lr=1e-2, weight_decay=0.3, amsgrad=True),
                 dict(maximize=True, betas=(0.8, 0.9))],
        converge=dict(lr=0.05, weight_decay=0.0),
        torch_name="AdamW"),
}

# (backend, C ISA variant); every family registers a kernel for each (kernels/ has the numba ones of all four)
BACKENDS = [("numpy", None), ("c", "baseline"), ("c", "avx2"), ("numba", None)]

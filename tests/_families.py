"""The table the optimizer tests run over: each family's class and the hyper-parameter combinations that
exercise every mode flag.  Adding a family here puts it through every table-driven test."""
from dataclasses import dataclass, field

import numpy as np

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
    # The last config of each family is the one the single-config tests use: every flag of the family on.
    # Where weight decay meets a normalised step (g / (sqrt(s) + eps)), eps is large: g = grad + wd * p can
    # cancel to about eps, where float32 and the float64 reference disagree in the first digit (ill-conditioned,
    # not wrong; the bitwise test checks those configs' C against the reference in the same dtype).
    "sgd": Family(
        pyopt.optim.SGD,
        # configs[0] has momentum: the None-grad test checks that stepped params get state, and plain SGD has none
        configs=[dict(lr=0.1, momentum=0.9), dict(), dict(lr=0.05, momentum=0.9, nesterov=True),
                 dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.1), dict(lr=0.1, weight_decay=0.05),
                 dict(lr=0.1, maximize=True), dict(lr=0.02, momentum=0.8, dampening=0.1, maximize=True),
                 dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)],
        converge=dict(lr=1e-3, momentum=0.9),
        torch_name="SGD"),
    "adagrad": Family(
        pyopt.optim.Adagrad,
        configs=[dict(), dict(lr=0.1, lr_decay=0.01), dict(weight_decay=0.1, eps=1e-3),
                 dict(initial_accumulator_value=0.5, eps=1e-6), dict(lr=0.05, maximize=True),
                 dict(lr=0.05, lr_decay=0.05, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-3,
                      maximize=True)],
        converge=dict(lr=0.5),
        torch_name="Adagrad"),
    "rmsprop": Family(
        pyopt.optim.RMSprop,
        # alpha <= 0.5 takes lerp's other branch; there s - a^2 cancels, so no momentum buffer would carry the
        # float32 error of g / sqrt(s - a^2) past the tolerance (the params see it times lr only)
        configs=[dict(), dict(centered=True), dict(lr=1e-3, momentum=0.9),
                 dict(alpha=0.9, eps=1e-3, weight_decay=0.1), dict(maximize=True),
                 dict(lr=1e-3, centered=True, alpha=0.4),
                 dict(lr=3e-3, centered=True, momentum=0.5, weight_decay=0.05, alpha=0.95, eps=1e-2,
                      maximize=True)],
        converge=dict(lr=3e-3),
        torch_name="RMSprop"),
}

# (backend, C ISA variant); every family registers a kernel for each (kernels/ has the numba ones of all four)
BACKENDS = [("numpy", None), ("c", "baseline"), ("c", "avx2"), ("numba", None)]


def draw(rng, dtype=np.float32, sizes=(1, 7, 1023, 40000, 0)):
    """Random params for the family tests: odd sizes, an empty tensor last."""
    return [rng.standard_normal(n).astype(dtype) for n in sizes]

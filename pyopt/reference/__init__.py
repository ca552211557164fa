"""NumPy references: the specification of every op.

Each function updates its arrays in place, in their own dtype (float64 inputs give the float64 answer that the
tests compare every backend with), following PyTorch's formulas operation for operation so that a run can move
between ``torch.optim`` and pyopt.  They favour readability over speed.
"""
from pyopt.reference.adagrad import adagrad_step
from pyopt.reference.adam import adam_step, adamw_step
from pyopt.reference.rmsprop import rmsprop_step
from pyopt.reference.sgd import sgd_step

__all__ = ["adagrad_step", "adam_step", "adamw_step", "rmsprop_step", "sgd_step"]

"""NumPy references: the specification of every op.

Each function updates its arrays in place, in their own dtype (float64 inputs give the float64 answer that the
tests compare every backend with), following PyTorch's formulas operation for operation so that a run can move
between ``torch.optim`` and pyopt.  They favour readability over speed.

The norm references (layer_norm, rms_norm, batch_norm and their backwards) return new arrays instead (only
BatchNorm's running stats are updated in place), computed in float64 whatever the input dtype and rounded to it.
"""
from pyopt.reference.adagrad import adagrad_step
from pyopt.reference.adam import adam_step, adamw_step
from pyopt.reference.batch_norm import batch_norm, batch_norm_backward
from pyopt.reference.layer_norm import layer_norm, layer_norm_backward
from pyopt.reference.rmsprop import rmsprop_step
from pyopt.reference.rms_norm import rms_norm, rms_norm_backward
from pyopt.reference.sgd import sgd_step

__all__ = ["adagrad_step", "adam_step", "adamw_step", "rmsprop_step", "sgd_step"]
__all__ += ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward", "rms_norm",
            "rms_norm_backward"]

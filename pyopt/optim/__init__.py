"""Optimizers with PyTorch's constructor arguments, param groups and state_dict, over NumPy arrays."""
from pyopt.optim.adam import Adam, AdamW
from pyopt.optim.linesearch_optim import LBFGS, GradientDescent, MinimizeResult
from pyopt.optim.optimizer import Optimizer

__all__ = ["Adam", "AdamW", "GradientDescent", "LBFGS", "MinimizeResult", "Optimizer"]

"""Optimizers with PyTorch's constructor arguments, param groups and state_dict, over NumPy arrays."""
from pyopt.optim.adam import Adam, AdamW
from pyopt.optim.optimizer import Optimizer

__all__ = ["Adam", "AdamW", "Optimizer"]

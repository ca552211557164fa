"""Optimizers with PyTorch's constructor arguments, param groups and state_dict, over NumPy arrays."""
from pyopt.optim.adagrad import Adagrad
from pyopt.optim.adam import Adam, AdamW
from pyopt.optim.linesearch_optim import LBFGS, GradientDescent, MinimizeResult
from pyopt.optim.optimizer import Optimizer
from pyopt.optim.rmsprop import RMSprop
from pyopt.optim.sgd import SGD

__all__ = ["Adagrad", "Adam", "AdamW", "GradientDescent", "LBFGS", "MinimizeResult", "Optimizer", "RMSprop", "SGD"]

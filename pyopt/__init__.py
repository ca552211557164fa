"""pyopt: fused optimizer steps and normalization kernels, checked against NumPy references."""
from pyopt import backends, functional, nn, optim, preprocessing, reference
from pyopt._c import set_isa
from pyopt.runtime import get_num_threads, set_num_threads

__version__ = "0.1.0"
__all__ = ["backends", "functional", "optim", "reference", "set_isa", "set_num_threads", "get_num_threads"]
__all__ += ["nn", "preprocessing"]

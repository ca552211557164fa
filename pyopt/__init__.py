"""pyopt: fused optimizer steps and normalization kernels, checked against NumPy references."""
from pyopt import backends, functional, init, linesearch, nn, optim, preprocessing, reference, schedules
from pyopt._c import set_isa
from pyopt.runtime import get_num_threads, set_num_threads
from pyopt.track import track

__version__ = "0.1.0"
__all__ = ["backends", "functional", "init", "linesearch", "optim", "reference", "schedules", "set_isa",
           "set_num_threads", "get_num_threads", "track"]
__all__ += ["nn", "preprocessing"]

"""pyopt: fused optimizer steps and normalization kernels, checked against NumPy references."""
import os as _os


def _source_tree_kernels():
    """``kernels/`` installs as ``pyopt.kernels`` (setup.py's package_dir).  When pyopt is imported from the source
    tree (PYTHONPATH, an in-place build), map that one subpackage to the tree's ``kernels/`` too."""
    import importlib.util
    import sys

    here = _os.path.dirname(_os.path.abspath(__file__))
    source = _os.path.join(_os.path.dirname(here), "kernels")
    if "pyopt.kernels" in sys.modules or _os.path.isdir(_os.path.join(here, "kernels")):
        return
    init = _os.path.join(source, "__init__.py")
    if not _os.path.isfile(init):
        return
    spec = importlib.util.spec_from_file_location("pyopt.kernels", init, submodule_search_locations=[source])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pyopt.kernels"] = module
    spec.loader.exec_module(module)


_source_tree_kernels()
from pyopt import backends, functional, init, linesearch, nn, optim, preprocessing, reference, schedules
from pyopt._c import set_isa
from pyopt.runtime import get_num_threads, set_num_threads
from pyopt.track import track

__version__ = "0.1.0"
__all__ = ["backends", "functional", "init", "linesearch", "optim", "reference", "schedules", "set_isa",
           "set_num_threads", "get_num_threads", "track"]
__all__ += ["nn", "preprocessing"]

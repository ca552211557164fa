"""The one backend fixture body: a backend name with the C kernels' ISA variant forced for the test's duration
(skipped where the CPU cannot run that variant, or where the backend cannot run: numba not installed).  conftest.py, test_optimizers.py and the norm tests make their
fixtures from it over their own lists of (backend, isa)."""
import pytest

from pyopt import _c, backends


def use_backend(request):
    name, isa = request.param
    if isa is not None and isa not in _c.isas():
        pytest.skip(reason=f"this CPU cannot run the {isa} variant")
    why = backends.available()[name]
    if why is not None and name != "c":  # c is required (conftest.py refuses to run without it)
        pytest.skip(reason=f"the {name} backend cannot run here: {why}")
    previous = _c.set_isa(isa or "auto")
    yield name
    _c.set_isa(previous)


def backend_id(param):
    name, isa = param
    return name + (f"-{isa}" if isa else "")


def backend_fixture(params):
    return pytest.fixture(params=params, ids=backend_id)(use_backend)

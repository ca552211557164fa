import os
import sys
import zlib

import numpy as np
import pytest

# the helpers beside the tests (_compare, _tolerances, _families) import as top-level modules
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global NumPy seed; tests draw from the ``rng`` fixture where they can."""
    np.random.seed(1234)


@pytest.fixture
def rng(request):
    """A Generator seeded from the test's name, so each test has its own reproducible stream."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_configure(config):
    import pyopt._c

    if pyopt._c.IMPORT_ERROR:
        raise pytest.UsageError(
            f"{pyopt._c.IMPORT_ERROR}: pyopt was imported from {pyopt.__file__}. Run the tests with `pytest` over an "
            "installed pyopt (pip install '.[test]') or an editable one (pip install -e '.[test]'); "
            "`python -m pytest` from the repository root imports the unbuilt source tree.")


@pytest.fixture(params=[("numpy", None), ("c", "baseline"), ("c", "avx2")], ids=["numpy", "c-baseline", "c-avx2"])
def backend(request):
    """Each backend, and each ISA variant of the C kernels (forced, then restored); the family test files use
    it (test_optimizers.py has its own copy over _families.BACKENDS)."""
    from pyopt import _c

    name, isa = request.param
    if isa is not None and isa not in _c.isas():
        pytest.skip(reason=f"this CPU cannot run the {isa} variant")
    previous = _c.set_isa(isa or "auto")
    yield name
    _c.set_isa(previous)

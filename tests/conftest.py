import os
import sys
import zlib

import numpy as np
import pytest

# the helpers beside the tests (_compare, _tolerances, _families) import as top-level modules
sys.path.insert(0, os.path.dirname(__file__))

from _backends import backend_fixture  # noqa: E402  (a helper beside the tests)


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


# each backend, and each ISA variant of the C kernels; the family test files use it (test_optimizers.py makes its
# own over _families.BACKENDS, which adds numba)
backend = backend_fixture([("numpy", None), ("c", "baseline"), ("c", "avx2")])

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

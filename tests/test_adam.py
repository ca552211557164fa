"""Adam/AdamW-specific tests: the float64 reference against torch.optim.Adam / AdamW, and identities."""
import numpy as np
import pytest
from _compare import assert_bitwise
from _families import FAMILIES
from _torch import run_against_torch

import pyopt

CASES = [(name, k) for name in ("adam", "adamw") for k in range(len(FAMILIES[name].configs))]


@pytest.mark.parametrize("family,config", CASES)
def test_reference_matches_torch_in_float64(family, config, rng):
    run_against_torch(family, FAMILIES[family].configs[config], rng)


@pytest.mark.parametrize("family", ["adam", "adamw"])
def test_c_matches_torch_in_float64(family, rng):
    run_against_torch(family, FAMILIES[family].configs[-1], rng, backend="c")


def test_adamw_with_zero_weight_decay_is_adam(backend, rng):
    params = [rng.standard_normal(n).astype(np.float32) for n in (7, 40000)]
    adamw = pyopt.optim.AdamW([p.copy() for p in params], lr=1e-2, weight_decay=0.0, backend=backend)
    adam = pyopt.optim.Adam([p.copy() for p in params], lr=1e-2, backend=backend)
    for _ in range(4):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
        adamw.step(grads)
        adam.step(grads)
    for k, (a, b) in enumerate(zip(adamw.param_groups[0]["params"], adam.param_groups[0]["params"])):
        assert_bitwise(a, b, f"params[{k}]")

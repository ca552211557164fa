"""Adam/AdamW-specific tests: identities (the torch parity runs with every family in test_optimizers.py)."""
import numpy as np
from _compare import assert_bitwise

import pyopt


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

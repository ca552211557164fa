"""The stateful norm layers: the same results as the functional ops, PyTorch's state names and defaults,
running statistics in train mode only, buffer reuse, and a state dict that loads into torch.nn."""
import numpy as np
import pytest
from _compare import assert_bitwise, assert_close
from _norm_helpers import off_centre, randn
from _tolerances import NORM_FORWARD, tolerance

from pyopt import functional as F
from pyopt import nn


def test_layer_norm_layer_matches_functional_and_fills_grads(rng):
    layer = nn.LayerNorm(16)
    layer.weight[...] = off_centre(rng, (16,), np.float32, 1.0, 0.5)
    x, dy = off_centre(rng, (3, 5, 16), np.float32), randn(rng, (3, 5, 16), np.float32)
    y = layer(x)
    y_f, mean, rstd = F.layer_norm(x, (16,), layer.weight, layer.bias)
    assert_bitwise(y, y_f, "y")
    dx = layer.backward(dy)
    dx_f, dw_f, db_f = F.layer_norm_backward(dy, x, layer.weight, mean, rstd, (16,))
    assert_bitwise(dx, dx_f, "dx")
    assert_bitwise(layer.grads["weight"], dw_f, "weight grad")
    assert_bitwise(layer.grads["bias"], db_f, "bias grad")
    assert set(nn.LayerNorm(16, elementwise_affine=False).state_dict()) == set()


def test_rms_norm_layer(rng):
    layer = nn.RMSNorm((2, 8), eps=1e-6, dtype=np.float64)
    x = randn(rng, (4, 2, 8), np.float64)
    assert_bitwise(layer(x), F.rms_norm(x, (2, 8), layer.weight, 1e-6)[0], "y")
    assert layer.backward(randn(rng, x.shape, np.float64)).shape == x.shape and set(layer.grads) == {"weight"}


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_layer_tracks_running_stats_in_train_mode_only(momentum, rng):
    layer = nn.BatchNorm(3, momentum=momentum)
    for step in range(1, 4):
        layer(off_centre(rng, (6, 3, 4, 4), np.float32, centre=step))
        assert int(layer.num_batches_tracked) == step
    frozen = layer.state_dict()
    layer.eval()
    x = off_centre(rng, (2, 3, 4, 4), np.float32)
    y = layer(x)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert_bitwise(getattr(layer, name), frozen[name], name)
    expected = (x - frozen["running_mean"][:, None, None]) / np.sqrt(frozen["running_var"][:, None, None] + 1e-5)
    assert_close(y, expected, *tolerance(NORM_FORWARD, np.float32), "eval output")
    dx = layer.backward(np.ones_like(x))
    assert_close(dx, np.broadcast_to(1 / np.sqrt(frozen["running_var"][:, None, None] + 1e-5), x.shape),
                 *tolerance(NORM_FORWARD, np.float32), "eval dx")


def test_state_dict_interchanges_with_torch(rng):
    torch = pytest.importorskip("torch")
    layer = nn.BatchNorm(4)
    layer(off_centre(rng, (5, 4, 3, 3), np.float32))
    ref = torch.nn.BatchNorm2d(4)
    ref.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in layer.state_dict().items()})
    back = nn.BatchNorm(4)
    back.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    for name, value in layer.state_dict().items():
        assert_bitwise(back.state_dict()[name], value, name)
    with pytest.raises(ValueError, match="missing"):
        back.load_state_dict({"weight": np.ones(4, np.float32)})


def test_reuse_outputs_writes_the_same_arrays_and_keeps_channels_last(rng):
    layer = nn.BatchNorm(3, reuse_outputs=True)
    x = off_centre(rng, (4, 5, 5, 3), np.float32).transpose(0, 3, 1, 2)  # channels_last memory
    y1 = layer(x)
    y2 = layer(x)
    assert y1 is y2 and y1.transpose(0, 2, 3, 1).flags.c_contiguous
    fresh = nn.BatchNorm(3)
    assert fresh(x) is not fresh(x)
    with pytest.raises(RuntimeError, match="before a forward"):
        nn.LayerNorm(3).backward(np.ones((1, 3), np.float32))

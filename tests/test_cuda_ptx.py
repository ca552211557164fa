"""Compile check of the CUDA kernels without a GPU: every family x every mode-flag combination x float32/float64
(the optimizers, and the norms' kernels of kernels/layer_norm.py, rms_norm.py, batch_norm.py)
compiled to PTX for compute capability 9.0 with ``cuda.compile_ptx`` (a typing error fails here, not on the
first GPU that runs it), without FMA contraction, and assembled by ``ptxas -arch=sm_90`` where it is installed.

Run in its own process, without the simulator (``compile_ptx`` fails under it)::

    pytest -m ptx

It needs numba-cuda and the ``nvidia-cuda-nvrtc`` wheel (numba-cuda loads libnvrtc; the machine's NVVM does the
compiling).  Without them the tests skip, unless ``PYOPT_REQUIRE_PTX=1`` (CI) makes that a failure.
"""
import importlib
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.ptx

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip(reason="compile_ptx does not work under the CUDA simulator", allow_module_level=True)

FAMILIES = ("adam", "sgd", "adagrad", "rmsprop")


@pytest.fixture(scope="module")
def cuda():
    try:
        from numba import cuda as module

        if getattr(module, "implementation", None) != "NVIDIA":
            raise ImportError("numba.cuda is not numba-cuda's target")
        module.compile_ptx(lambda a: None, "void(float32[::1])", cc=(9, 0))
    except Exception as exc:  # noqa: BLE001 - any reason compile_ptx cannot run
        message = f"cannot compile PTX here ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        if os.environ.get("PYOPT_REQUIRE_PTX") == "1":
            pytest.fail(message + "; install numba-cuda and nvidia-cuda-nvrtc (the test extra)")
        pytest.skip(reason=message)
    return module


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_kernel_compiles_to_exact_ptx_for_sm90(cuda, family, dtype, tmp_path):
    from pyopt.kernels import _launch

    module = importlib.import_module(f"pyopt.kernels.{family}")
    signature = module.cuda_signature(dtype)
    ptxas = shutil.which("ptxas")
    assert module.FLAG_SPACE
    for flags in module.FLAG_SPACE:
        with _launch.exact_math():
            ptx, _ = cuda.compile_ptx(module.CUDA.make(*flags), signature, cc=(9, 0))
        assert ".target sm_90" in ptx
        # -fma=0 reached NVVM: no contraction, so the kernel rounds after every operation like the reference
        assert "fma.rn" not in ptx, f"{family} {flags}: FMA contraction in the PTX"
        sqrt = "sqrt.rn.f32" if dtype == np.float32 else "sqrt.rn.f64"
        if family != "sgd":
            assert sqrt in ptx, f"{family} {flags}: no IEEE square root"
        if ptxas:
            path = tmp_path / f"{family}.ptx"
            path.write_text(ptx)
            result = subprocess.run([ptxas, "-arch=sm_90", str(path), "-o", str(tmp_path / "out.cubin")],
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, f"{family} {flags}: ptxas: {result.stderr[:2000]}"


NORM_MODULES = ("layer_norm", "rms_norm", "batch_norm", "_norm_host")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("module_name", NORM_MODULES)
def test_every_norm_kernel_compiles_to_exact_ptx_for_sm90(cuda, module_name, dtype, tmp_path):
    """Every norm kernel (each mode-flag combination: weight/bias present, planar/channels-last, forward/backward)
    for the launch shape of a GPU: the shared-memory trees, the intrinsics (views, casts) and the rules typed for
    the CUDA target; no FMA contraction, no atomics (every reduction has a fixed order)."""
    from pyopt.kernels import _launch

    module = importlib.import_module(f"pyopt.kernels.{module_name}")
    cases = module.ptx_cases(dtype)
    assert cases
    ptxas = shutil.which("ptxas")
    for label, py_func, signature in cases:
        with _launch.exact_math():
            ptx, _ = cuda.compile_ptx(py_func, signature, cc=(9, 0))
        assert ".target sm_90" in ptx, label
        assert "fma.rn" not in ptx, f"{label}: FMA contraction in the PTX"
        assert not re.search(r"^\s*(atom|red)\.", ptx, re.M), f"{label}: an atomic in the PTX"
        if ptxas:
            path = tmp_path / "kernel.ptx"
            path.write_text(ptx)
            result = subprocess.run([ptxas, "-arch=sm_90", str(path), "-o", str(tmp_path / "out.cubin")],
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, f"{label}: ptxas: {result.stderr[:2000]}"


def test_compiling_outside_exact_math_leaves_fma_on(cuda):
    """The -fma=0 switch is scoped: other kernels of the process compile as numba-cuda compiles them."""
    from pyopt.kernels import _launch

    def axpy(out, x, y, a):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = a * x[i] + y[i]

    signature = "void(float32[::1], float32[::1], float32[::1], float32)"
    with _launch.exact_math():
        exact, _ = cuda.compile_ptx(axpy, signature, cc=(9, 0))
    default, _ = cuda.compile_ptx(axpy, signature, cc=(9, 0))
    assert "fma.rn" not in exact and "fma.rn" in default

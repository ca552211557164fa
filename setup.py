"""Build of the C extension; the project metadata lives in pyproject.toml."""
from setuptools import setup

setup(
    # kernels/ (the Numba kernels) installs as pyopt.kernels
    packages=["pyopt", "pyopt.reference", "pyopt.optim", "pyopt.demo", "pyopt.kernels"],
    package_dir={"pyopt": "pyopt", "pyopt.kernels": "kernels"},
    cffi_modules=["csrc/build.py:ffibuilder"],
    zip_safe=False,
)

"""Build of the C extension; the project metadata lives in pyproject.toml."""
from setuptools import setup

setup(
    packages=["pyopt", "pyopt.reference", "pyopt.optim", "pyopt.demo"],
    package_dir={"pyopt": "pyopt"},
    cffi_modules=["csrc/build.py:ffibuilder"],
    zip_safe=False,
)

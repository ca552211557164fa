"""Numba kernels (CPU ``numba`` and GPU ``cuda`` backends), one module per op family; installs as
``pyopt.kernels``.  Importing this package imports nothing heavy: numba loads with the first family module."""

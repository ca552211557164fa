"""The ``c`` backend: cffi glue between the Python layer and ``pyopt._cpu``.

Pointer tables (``void *[]``) are built once per list of arrays and reused; per step only the scalars change.
The kernels release the GIL (cffi API mode).
"""
import os

import numpy as np

try:
    from pyopt._cpu import ffi, lib
except ImportError as exc:  # the extension was not built (e.g. a source tree without pip install)
    ffi = lib = None
    IMPORT_ERROR = f"the C extension pyopt._cpu is not built ({exc})"
else:
    IMPORT_ERROR = None
    # A child forked after an OpenMP region would hang in its next region: release the pool before fork.
    os.register_at_fork(before=lib.pyopt_release_thread_pool)

ISA_CODES = {"auto": 0, "baseline": 1, "avx2": 2}
_isa = "auto"


def available():
    return lib is not None


def isas():
    """The ISA variants this CPU can run, best last."""
    return ["baseline", "avx2"] if lib.pyopt_cpu_has_avx2() else ["baseline"]


def set_isa(name):
    """Force one ISA variant of every C kernel ('auto', 'baseline', 'avx2'); returns the previous setting."""
    global _isa
    if name not in ISA_CODES:
        raise ValueError(f"isa must be one of {sorted(ISA_CODES)}, got {name!r}")
    if name != "auto" and name not in isas():
        raise ValueError(f"isa {name!r} cannot run on this CPU (it supports {isas()})")
    previous, _isa = _isa, name
    return previous


def isa_code():
    return ISA_CODES[_isa]


def cache_bytes():
    """The last-level cache size the norm kernels plan with: calls touching more than half of it write their
    outputs with non-temporal stores, and BatchNorm runs channel by channel when a channel fits in a quarter of
    it."""
    return lib.pyopt_cache_bytes()


def set_cache_bytes(nbytes):
    """Override :func:`cache_bytes` (``None``: back to the detected size); returns the previous override or None.
    Tests use 0 to take the streaming and tiled paths at small sizes."""
    return _set_override("cache_bytes", lib.pyopt_set_cache_bytes, nbytes)


def bn_group_bytes():
    """Bytes of each row's runs the C BatchNorm backward takes at once on its channel path (0: one channel at a
    time): 12 KB, or 0 on AMD Zen 5, where one channel at a time measured faster (csrc/runtime.c)."""
    return lib.pyopt_bn_group_bytes()


def set_bn_group_bytes(nbytes):
    """Override :func:`bn_group_bytes` (``None``: back to this CPU's default); returns the previous override or
    None.  The group never changes a result's bits; tests pin it to cover both ways on any machine."""
    return _set_override("bn_group_bytes", lib.pyopt_set_bn_group_bytes, nbytes)


_overrides = {"cache_bytes": None, "bn_group_bytes": None}


def _set_override(name, c_setter, nbytes):
    """Sets one of the C runtime's planning overrides (-1 there: the default); returns the previous one."""
    if nbytes is not None and (not isinstance(nbytes, int) or nbytes < 0):
        raise ValueError(f"nbytes must be a non-negative int or None, got {nbytes!r}")
    previous, _overrides[name] = _overrides[name], nbytes
    c_setter(-1 if nbytes is None else nbytes)
    return previous


def pointer_table(arrays):
    """A ``void *[]`` holding the data pointers of ``arrays`` (None gives NULL).  The caller keeps the arrays alive."""
    return ffi.new("void *[]", [ffi.NULL if a is None else ffi.from_buffer(a) for a in arrays])


def find_overlap(arrays):
    """The first pair (i, j) of arrays whose memory overlaps, or None."""
    arrays = [a for a in arrays if a is not None]
    n = len(arrays)
    if n < 2:
        return None
    nbytes = np.fromiter((a.nbytes for a in arrays), dtype=np.int64, count=n)
    first, second = ffi.new("int64_t *"), ffi.new("int64_t *")
    found = lib.pyopt_find_overlap(n, pointer_table(arrays), ffi.from_buffer("int64_t[]", nbytes), first, second)
    if found < 0:
        raise MemoryError("pyopt_find_overlap: out of memory")
    return (first[0], second[0]) if found else None


def doubles(values):
    """A float64 array as ``const double *`` (zero-copy; the caller keeps the array alive)."""
    return ffi.from_buffer("double[]", values)


def int64s(values):
    return ffi.from_buffer("int64_t[]", values)


def check(status, op):
    if status != 0:
        raise RuntimeError(f"pyopt C kernel {op} failed with status {status} (isa={_isa!r})")

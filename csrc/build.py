"""The cffi builder of ``pyopt._cpu`` (API mode), named in setup.py's ``cffi_modules``.

The library is compiled for baseline x86-64; kernels carry AVX2+FMA copies of their loops through
``__attribute__((target))`` and choose at run time, so the installed module runs on any x86-64 CPU.
``-fno-math-errno`` lets sqrt vectorize; ``-ffast-math`` is avoided (gcc < 13 links crtfastmath, which turns on
flush-to-zero for the whole process, and it would license reassociation that breaks the references).
``-ffp-contract=off`` keeps a*b+c as two roundings in the AVX2 copy too: the kernels are memory-bound, so FMA buys
no time, and without it every ISA variant gives bitwise the reference's answer in the array's dtype.
"""
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["runtime.c", "bandwidth.c", "adam.c", "sgd.c", "adagrad.c", "rmsprop.c"]
SOURCES += ["layer_norm.c", "rms_norm.c", "batch_norm.c"]


def _cdef(header_text):
    """The header less preprocessor lines: cffi's cdef parses declarations only."""
    lines = [line for line in header_text.splitlines() if not line.lstrip().startswith("#")]
    return re.sub(r"/\*.*?\*/", "", "\n".join(lines), flags=re.S)


ffibuilder = FFI()
with open(os.path.join(HERE, "pyopt_cpu.h")) as fh:
    ffibuilder.cdef(_cdef(fh.read()))

ffibuilder.set_source(
    "pyopt._cpu",
    '#include "pyopt_cpu.h"',
    sources=[os.path.relpath(os.path.join(HERE, s)) for s in SOURCES],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp"],
    extra_link_args=["-fopenmp"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

"""``pyopt demo``: the lecture's claims as pictures made with pyopt's own kernels (``pip install '.[plot]'``).

===============  ==========================================================================================
demo             what it shows
===============  ==========================================================================================
``optimizers``   an MLP with LayerNorm on scikit-learn's digits trained by SGD, momentum, Nesterov, AdaGrad,
                 RMSProp, Adam and AdamW: training and validation loss, and the throughput reached
``schedules``    every schedule of :mod:`pyopt.schedules`: its learning-rate curve and the loss it gives
``trajectories`` gradient descent with and without momentum on an ill-conditioned valley and on Rosenbrock
``init``         activation and gradient variance per layer of a 20-layer network for naive, LeCun, Xavier and
                 He initialization, with and without BatchNorm/LayerNorm; and which of them train
``linesearch``   a fixed budget of sample-gradients spent by full-batch gradient descent / L-BFGS with Wolfe
                 line search and by mini-batch SGD: the test error each reaches (Bottou & Bousquet)
===============  ==========================================================================================

Each ``run(name, out, seed=, steps=, tiny=, progress=)`` writes PNGs under ``out`` and returns a dict of the
numbers it plotted (``files`` lists the PNGs), so that tests can assert on them.  ``tiny=True`` shrinks every
size so that a demo takes a few seconds.  The data set is scikit-learn's digits (it ships with the package, no
download), or synthetic spirals when scikit-learn is absent (``dataset="spirals"`` forces them).
"""
import importlib

from pyopt.demo._common import DemoError, blas_single_thread

DEMOS = {
    "optimizers": "pyopt.demo.optimizers",
    "schedules": "pyopt.demo.schedules",
    "trajectories": "pyopt.demo.trajectories",
    "init": "pyopt.demo.initializers",
    "linesearch": "pyopt.demo.linesearch",
}
USES_DATASET = ("optimizers", "schedules", "init", "linesearch")

__all__ = ["DEMOS", "DemoError", "run"]


def run(name, out, *, seed=0, steps=None, tiny=False, progress=True, dataset="auto"):
    """Runs demo ``name`` (a key of :data:`DEMOS`), writing its PNGs under ``out``; returns its metrics."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose from {', '.join(DEMOS)}")
    module = importlib.import_module(DEMOS[name])
    kwargs = dict(seed=seed, steps=steps, tiny=tiny, progress=progress)
    if name in USES_DATASET:
        kwargs["dataset"] = dataset
    with blas_single_thread():
        return module.run(out, **kwargs)

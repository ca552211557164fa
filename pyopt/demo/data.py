"""The demos' classification data: scikit-learn's handwritten digits, or synthetic spirals without scikit-learn.

Both come standardized with the training split's statistics (the lecture's first step: zero mean, unit variance
per feature; constant features are left at zero) and split into train, validation and test sets.
"""
from dataclasses import dataclass

import numpy as np

SOURCES = ("auto", "digits", "spirals")


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int

    @property
    def features(self):
        return self.x_train.shape[1]


def spirals(n_per_class=400, classes=3, noise=0.2, turns=1.0, rng=None):
    """``classes`` interleaved spiral arms in 2-D (CS231n's toy set): (x float64 of shape (n, 2), labels)."""
    rng = np.random.default_rng(rng)
    r = np.tile(np.linspace(0.05, 1.0, n_per_class), classes)
    k = np.repeat(np.arange(classes), n_per_class)
    theta = (2 * np.pi * turns * r + 2 * np.pi * k / classes + noise * rng.standard_normal(r.size))
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return x, k


def _digits():
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    bunch = load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def load(source="auto", *, rng=None, val_fraction=0.15, test_fraction=0.2, dtype=np.float32, limit=None):
    """The standardized splits of ``source``: ``"digits"`` (1797 8x8 images, 10 classes), ``"spirals"`` (1200
    points, 3 classes) or ``"auto"`` (digits when scikit-learn imports, else spirals).  ``limit`` keeps at most
    that many samples (tests)."""
    if source not in SOURCES:
        raise ValueError(f"dataset must be one of {SOURCES}, got {source!r}")
    rng = np.random.default_rng(rng)
    name = source
    if source in ("auto", "digits"):
        try:
            x, y = _digits()
            name = "digits"
        except ImportError:
            if source == "digits":
                raise
            name = "spirals"
    if name == "spirals":
        x, y = spirals(rng=rng)
    classes = int(y.max()) + 1
    order = rng.permutation(len(y))
    if limit is not None:
        order = order[:limit]
    x, y = x[order], y[order]
    n_test, n_val = int(round(test_fraction * len(y))), int(round(val_fraction * len(y)))
    n_train = len(y) - n_test - n_val
    train, val, test = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0   # constant pixels (the digits' corners) stay at 0
    x = ((x - mean) / std).astype(dtype)
    return Dataset(name, x[train], y[train], x[val], y[val], x[test], y[test], classes)

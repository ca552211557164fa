"""A small multilayer perceptron for the demos: dense layers with hand-written NumPy backprop, pyopt's LayerNorm
and BatchNorm kernels (:mod:`pyopt.functional`) for its norms, a softmax cross-entropy loss, and a training loop
that steps any pyopt optimizer.

A hidden block is ``dense -> [norm] -> activation``; the last layer is dense.  The parameters and their
gradients are two aligned lists of arrays; the gradient arrays are allocated once and overwritten in place
each step, so the optimizer sees the same objects every step and reuses its cached plan (the fast path).
"""
import math
import time

import numpy as np

from pyopt import functional as F
from pyopt import init as initializers


def initial_weight(shape, init, rng, dtype):
    """``init``: a pyopt.init name (``"he_normal"``...) or a float, the standard deviation of a plain normal."""
    if isinstance(init, str):
        return getattr(initializers, init)(shape, rng=rng, dtype=dtype)
    return (float(init) * rng.standard_normal(shape)).astype(dtype)


class Dense:
    """``y = x W^T + b`` with ``W`` of shape (out, in), PyTorch's layout (so pyopt.init's fans apply)."""

    def __init__(self, n_in, n_out, init, rng, dtype):
        self.weight = initial_weight((n_out, n_in), init, rng, dtype)
        self.bias = np.zeros(n_out, dtype)
        self.params = [self.weight, self.bias]
        self.grads = [np.zeros_like(self.weight), np.zeros_like(self.bias)]

    def forward(self, x, training):
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, dy):
        np.matmul(dy.T, self.x, out=self.grads[0])
        np.sum(dy, axis=0, out=self.grads[1])
        return dy @ self.weight


class LayerNorm:
    """Per-sample statistics over the features (:func:`pyopt.functional.layer_norm`)."""

    def __init__(self, n, dtype, eps=1e-5):
        self.weight, self.bias, self.eps, self.shape = np.ones(n, dtype), np.zeros(n, dtype), eps, (n,)
        self.params = [self.weight, self.bias]
        self.grads = [np.zeros_like(self.weight), np.zeros_like(self.bias)]

    def forward(self, x, training):
        y, self.mean, self.rstd = F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)
        self.x = x
        return y

    def backward(self, dy):
        dx, dw, db = F.layer_norm_backward(dy, self.x, self.weight, self.mean, self.rstd, self.shape)
        self.grads[0][...] = dw
        self.grads[1][...] = db
        return dx


class BatchNorm:
    """Per-feature statistics over the batch in training, running statistics in evaluation
    (:func:`pyopt.functional.batch_norm`; features are the channel axis 1 of an (N, C) batch)."""

    def __init__(self, n, dtype, eps=1e-5, momentum=0.1):
        self.weight, self.bias, self.eps, self.momentum = np.ones(n, dtype), np.zeros(n, dtype), eps, momentum
        self.running_mean, self.running_var = np.zeros(n, dtype), np.ones(n, dtype)
        self.params = [self.weight, self.bias]
        self.grads = [np.zeros_like(self.weight), np.zeros_like(self.bias)]

    def forward(self, x, training):
        y, self.save_mean, self.save_rstd = F.batch_norm(
            x, self.weight, self.bias, self.running_mean, self.running_var, training=training,
            momentum=self.momentum, eps=self.eps, axis=1)
        self.x = x
        return y

    def backward(self, dy):
        dx, dw, db = F.batch_norm_backward(dy, self.x, self.weight, self.save_mean, self.save_rstd, axis=1)
        self.grads[0][...] = dw
        self.grads[1][...] = db
        return dx


class ReLU:
    params = grads = ()

    def forward(self, x, training):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class Tanh:
    params = grads = ()

    def forward(self, x, training):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1 - self.y * self.y)


NORMS = {None: None, "none": None, "layer": LayerNorm, "batch": BatchNorm}
ACTIVATIONS = {"relu": ReLU, "tanh": Tanh}


class MLP:
    """``sizes = (n_in, h_1, ..., h_k, n_classes)``; ``norm``: None, ``"layer"`` or ``"batch"`` in every hidden
    block; ``init``: the weights' initializer (a pyopt.init name or a standard deviation)."""

    def __init__(self, sizes, *, activation="relu", norm=None, init="he_normal", rng=None, dtype=np.float32):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(k for k in NORMS if k)} or None, got {norm!r}")
        rng = np.random.default_rng(rng)
        self.blocks = []  # one list of layers per hidden block, then [output dense]
        for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
            block = [Dense(n_in, n_out, init, rng, dtype)]
            if NORMS[norm] is not None:
                block.append(NORMS[norm](n_out, dtype))
            block.append(ACTIVATIONS[activation]())
            self.blocks.append(block)
        self.blocks.append([Dense(sizes[-2], sizes[-1], init, rng, dtype)])
        self.layers = [layer for block in self.blocks for layer in block]
        self.params = [p for layer in self.layers for p in layer.params]
        self.grads = [g for layer in self.layers for g in layer.grads]
        self.dtype = np.dtype(dtype)

    @property
    def numel(self):
        return sum(p.size for p in self.params)

    def forward(self, x, *, training=True, record=None):
        """The logits; ``record`` (a list) receives each hidden block's output."""
        h = x.astype(self.dtype, copy=False)
        for block in self.blocks:
            for layer in block:
                h = layer.forward(h, training)
            if record is not None and block is not self.blocks[-1]:
                record.append(h)
        return h

    def backward(self, dlogits, *, record=None):
        """Fills ``self.grads``; ``record`` receives the gradient arriving at each hidden block's output."""
        d = dlogits
        for block in reversed(self.blocks):
            if record is not None and block is not self.blocks[-1]:
                record.append(d)
            for layer in reversed(block):
                d = layer.backward(d)
        if record is not None:
            record.reverse()
        return d

    def loss_and_grad(self, x, y, *, record_activations=None, record_grads=None):
        """Mean cross-entropy of a training batch; the gradients are left in ``self.grads``."""
        logits = self.forward(x, training=True, record=record_activations)
        loss, dlogits = cross_entropy(logits, y, need_grad=True)
        self.backward(dlogits, record=record_grads)
        return loss

    def evaluate(self, x, y, batch=2048):
        """(mean cross-entropy, accuracy) in evaluation mode (BatchNorm on its running statistics)."""
        total, correct = 0.0, 0
        for start in range(0, len(y), batch):
            logits = self.forward(x[start:start + batch], training=False)
            total += cross_entropy(logits, y[start:start + batch])[0] * len(logits)
            correct += int((logits.argmax(axis=1) == y[start:start + batch]).sum())
        return total / len(y), correct / len(y)


def cross_entropy(logits, labels, *, need_grad=False):
    """Mean softmax cross-entropy (computed in float64) and, if asked, its gradient w.r.t. the logits."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logsumexp = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - logsumexp
    n = len(labels)
    loss = -float(logp[np.arange(n), labels].mean()) if n else math.nan
    if not need_grad:
        return loss, None
    d = np.exp(logp)
    d[np.arange(n), labels] -= 1.0
    return loss, (d / n).astype(logits.dtype)


def step_bytes(optimizer):
    """The minimum bytes one step of ``optimizer`` moves over all its params (each family declares its own)."""
    spec = type(optimizer).spec
    total = 0
    for group in optimizer.param_groups:
        hparams = optimizer.group_hparams(group)
        total += sum(spec.bytes_moved(p.size, p.itemsize, **hparams) for p in group["params"])
    return total


def train(model, optimizer, data, *, steps, batch_size, rng, evaluations=40, scheduler=None, on_step=None):
    """Mini-batch training (epochs of shuffled batches) for ``steps`` optimizer steps.

    Returns a dict: ``step``, ``train_loss``, ``val_loss``, ``val_accuracy`` (full training and validation sets in
    evaluation mode, at step 0 and about ``evaluations`` times), ``lr`` (the first group's lr used at every
    step), ``samples_per_s`` (training throughput, evaluations excluded), ``step_gb_s`` (optimizer-step
    bandwidth from the declared minimum bytes) and ``diverged``.
    """
    x, y = data.x_train, data.y_train
    every = max(1, steps // evaluations)
    history = dict(step=[], train_loss=[], val_loss=[], val_accuracy=[], lr=[], diverged=False)

    def evaluate(t):
        train_loss, _ = model.evaluate(x, y)
        val_loss, val_acc = model.evaluate(data.x_val, data.y_val)
        history["step"].append(t)
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_acc)
        return math.isfinite(train_loss)

    evaluate(0)
    nbytes = step_bytes(optimizer)
    order, cursor = rng.permutation(len(y)), 0
    train_seconds = step_seconds = 0.0
    for t in range(1, steps + 1):
        started = time.perf_counter()
        if cursor + batch_size > len(y):
            order, cursor = rng.permutation(len(y)), 0
        batch = order[cursor:cursor + batch_size]
        cursor += batch_size
        model.loss_and_grad(x[batch], y[batch])
        history["lr"].append(optimizer.param_groups[0]["lr"])
        before_step = time.perf_counter()
        optimizer.step(model.grads)
        after_step = time.perf_counter()
        if scheduler is not None:
            scheduler.step()
        step_seconds += after_step - before_step
        train_seconds += time.perf_counter() - started
        if t % every == 0 or t == steps:
            if not evaluate(t):
                history["diverged"] = True
                break
        if on_step is not None:
            on_step()
    done = len(history["lr"])
    history["samples_per_s"] = done * batch_size / train_seconds if train_seconds else math.nan
    history["step_gb_s"] = done * nbytes / step_seconds / 1e9 if step_seconds else math.nan
    history["step_us"] = 1e6 * step_seconds / max(done, 1)
    return history

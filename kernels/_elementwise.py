"""Per-element update rules of the optimizers, each written once and compiled for the CPU and for CUDA.

A rule is a plain Python function of ``(arrays..., i, scalars..., mode flags...)`` that reads element ``i`` of
its arrays and writes the results back.  :func:`rule` turns it into a :class:`Rule` whose ``cpu`` attribute is a
``numba.njit(inline="always")`` function (inlined into the ``@njit(parallel=True)`` drivers) and whose ``cuda``
attribute is a ``cuda.jit(device=True, inline="always", forceinline=True)`` one (inlined into the ``@cuda.jit``
kernels).  Both are built from the same source; only the names a rule calls are rebound per target:

- another rule (``lerp``) is replaced by that rule's version for the same target;
- ``sqrt`` is ``math.sqrt`` on the CPU and on the GPU (numba-cuda has no ``np.sqrt`` for scalars: its ufunc
  table raises ``KeyError``), and under the CUDA simulator a version that keeps a NumPy float32 a float32
  (``math.sqrt`` would return a Python float and turn the rest of the simulated float32 maths into float64);
- a module global that is a :class:`PerTarget` is replaced by its version for the target (the norm rules'
  ``cast`` intrinsic and the ``cuda`` module their block reductions use, :mod:`pyopt.kernels._norm_rules`).

Every rule does the reference's operations in the reference's order (``csrc/<family>.c`` does the same), so the
Numba CPU kernels, compiled without FMA contraction, give the reference's bits.  The mode flags (``decay``,
``amsgrad``, ``low_w``...) are compile-time constants at every call site: the drivers capture them in a closure,
so after inlining each branch on them folds away and the inner loop has no per-element branch.

Scalars arrive already rounded to the arrays' dtype (a float32 kernel gets float32 scalars from the host, the
same rounding ``(T)hp->beta2`` does in C and NumPy does for a Python scalar), so the maths stays in that dtype;
the rules contain no numeric literals, which would promote float32 maths to float64.
"""
import math
import types

import numpy as np

DECAY_NONE, DECAY_L2, DECAY_DECOUPLED = 0, 1, 2   # Adam's weight-decay modes, the codes of csrc/pyopt_cpu.h

sqrt = math.sqrt


def _sim_sqrt(x):
    """``math.sqrt`` that keeps a NumPy scalar's dtype (the simulator runs the rules as Python).  The float64
    square root rounded to float32 is the correctly rounded float32 square root (53 >= 2 * 24 + 2 bits)."""
    if isinstance(x, np.generic):
        return x.dtype.type(math.sqrt(x))
    return math.sqrt(x)


class PerTarget:
    """A name a rule calls whose implementation differs per target: ``PerTarget(cpu=f, cuda=g, cudasim=h)`` with
    zero-argument factories, called once, on first use (so that defining one imports nothing)."""

    def __init__(self, **factories):
        self.factories = factories
        self.versions = {}

    def get(self, target):
        if target not in self.versions:
            self.versions[target] = self.factories[target]()
        return self.versions[target]


class Rule:
    """One update rule and its compiled versions, built on first use (creating them compiles nothing: numba
    compiles at the first call of the kernel they are inlined into)."""

    def __init__(self, py_func):
        self.py_func = py_func
        self.__name__ = py_func.__name__
        self.__doc__ = py_func.__doc__
        self._versions = {}

    def _rebound(self, target):
        """A copy of the function whose globals name the ``target`` versions of the rules it calls."""
        namespace = dict(self.py_func.__globals__)
        for name in self.py_func.__code__.co_names:
            value = namespace.get(name)
            if isinstance(value, Rule):
                namespace[name] = value.version(target)
            elif isinstance(value, PerTarget):
                namespace[name] = value.get(target)
        if target == "cudasim":
            namespace["sqrt"] = _sim_sqrt
        fn = types.FunctionType(self.py_func.__code__, namespace, self.py_func.__name__,
                                self.py_func.__defaults__, self.py_func.__closure__)
        fn.__qualname__ = self.py_func.__qualname__
        fn.__module__ = self.py_func.__module__
        return fn

    def version(self, target):
        """``target``: "cpu", "cuda" or "cudasim"."""
        fn = self._versions.get(target)
        if fn is None:
            if target == "cpu":
                import numba

                fn = numba.njit(inline="always")(self._rebound(target))
            else:
                from numba import cuda

                # the simulator's jit takes no inlining options (it runs the function as Python)
                options = {} if target == "cudasim" else dict(inline="always", forceinline=True)
                fn = cuda.jit(device=True, **options)(self._rebound(target))
            self._versions[target] = fn
        return fn

    @property
    def cpu(self):
        return self.version("cpu")

    @property
    def cuda(self):
        from pyopt.kernels import _launch

        return self.version("cudasim" if _launch.simulator() else "cuda")


def rule(py_func):
    return Rule(py_func)


@rule
def lerp(start, end, w, one_minus_w, low_w):
    """PyTorch's ``torch.lerp``: ``start + w (end - start)`` for ``|w| < 0.5``, else ``end - (end - start)(1 - w)``
    (``low_w`` says which; it is constant for a whole call)."""
    if low_w:
        return start + w * (end - start)
    return end - (end - start) * one_minus_w


@rule
def adam_update(p, g, m, v, vmax, i, gsign, w, one_minus_w, beta2, one_minus_beta2, weight_decay, decay_factor,
                neg_step_size, bias_correction2_sqrt, eps, decay, amsgrad, low_w):
    """Adam / AdamW on element ``i`` (:mod:`pyopt.reference.adam`; ``w = 1 - beta1``).  ``vmax`` is read only
    when ``amsgrad``."""
    grad = -g[i] if gsign < 0 else g[i]  # negation flips a NaN's sign as the reference does; -1 * x does not
    param = p[i]
    if decay == DECAY_DECOUPLED:
        param = param * decay_factor
    if decay == DECAY_L2:
        grad = grad + weight_decay * param
    exp_avg = lerp(m[i], grad, w, one_minus_w, low_w)
    exp_avg_sq = v[i] * beta2 + one_minus_beta2 * grad * grad
    m[i] = exp_avg
    v[i] = exp_avg_sq
    if amsgrad:
        old = vmax[i]
        # torch.maximum: a NaN in either operand propagates (a plain max would drop one of them)
        exp_avg_sq = exp_avg_sq if (exp_avg_sq > old or exp_avg_sq != exp_avg_sq) else old
        vmax[i] = exp_avg_sq
    denom = sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    p[i] = param + neg_step_size * exp_avg / denom


@rule
def sgd_update(p, g, b, i, gsign, weight_decay, momentum, one_minus_dampening, neg_lr, has_momentum, nesterov,
               decay, first):
    """SGD on element ``i`` (:mod:`pyopt.reference.sgd`).  ``b`` is touched only when ``has_momentum``;
    ``first``: the tensor's first momentum step, where the buffer becomes the gradient."""
    grad = -g[i] if gsign < 0 else g[i]  # negation flips a NaN's sign as the reference does; -1 * x does not
    param = p[i]
    if decay:
        grad = grad + weight_decay * param
    if has_momentum:
        if first:
            buf = grad
        else:
            buf = b[i] * momentum + one_minus_dampening * grad
        b[i] = buf
        if nesterov:
            grad = grad + momentum * buf
        else:
            grad = buf
    p[i] = param + neg_lr * grad


@rule
def adagrad_update(p, g, s, i, gsign, weight_decay, neg_clr, eps, decay):
    """Adagrad on element ``i`` (:mod:`pyopt.reference.adagrad`; ``neg_clr`` is minus the decayed rate)."""
    grad = -g[i] if gsign < 0 else g[i]  # negation flips a NaN's sign as the reference does; -1 * x does not
    param = p[i]
    if decay:
        grad = grad + weight_decay * param
    total = s[i] + grad * grad
    s[i] = total
    std = sqrt(total) + eps
    p[i] = param + neg_clr * grad / std


@rule
def rmsprop_update(p, g, s, a, b, i, gsign, alpha, one_minus_alpha, w, one_minus_w, eps, weight_decay, momentum,
                   neg_lr, centered, has_momentum, decay, low_w):
    """RMSprop on element ``i`` (:mod:`pyopt.reference.rmsprop`; ``w = 1 - alpha`` is lerp's weight).  ``a`` is
    touched only when ``centered``, ``b`` only when ``has_momentum``."""
    grad = -g[i] if gsign < 0 else g[i]  # negation flips a NaN's sign as the reference does; -1 * x does not
    param = p[i]
    if decay:
        grad = grad + weight_decay * param
    square_avg = s[i] * alpha + one_minus_alpha * grad * grad
    s[i] = square_avg
    if centered:
        grad_avg = lerp(a[i], grad, w, one_minus_w, low_w)
        a[i] = grad_avg
        avg = sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = sqrt(square_avg)
    avg = avg + eps
    if has_momentum:
        buf = b[i] * momentum + grad / avg
        b[i] = buf
        p[i] = param + neg_lr * buf
    else:
        p[i] = param + neg_lr * grad / avg


def lerp_weight(weight, dtype):
    """Host side of :func:`lerp`: ``(w, 1 - w, |w| < 0.5)`` with ``w`` rounded to ``dtype`` first, as ATen rounds
    a Python scalar weight, and ``1 - w`` computed in ``dtype`` (what the reference and the C kernels do)."""
    t = np.dtype(dtype).type
    w = t(weight)
    return w, t(1) - w, bool(abs(w) < 0.5)

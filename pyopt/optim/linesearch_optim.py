"""Full-batch optimizers driven by a line search: gradient descent and L-BFGS, on a flat float64 vector.

At each iterate :math:`x_k` with gradient :math:`g_k` a direction :math:`d_k` is chosen and a line search
(:mod:`pyopt.linesearch`) picks the step :math:`\\alpha_k`:

.. math::

    d_k &= -g_k                                    && \\texttt{GradientDescent}\\\\
    d_k &= -H_k g_k                                 && \\texttt{LBFGS}\\\\
    x_{k+1} &= x_k + \\alpha_k d_k

L-BFGS's :math:`H_k` is the inverse-Hessian approximation of the last :math:`m` (``history_size``) pairs
:math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} - g_i`, applied by the two-loop recursion (N&W algorithm 7.4)
from :math:`H_k^0 = \\gamma_k I`, :math:`\\gamma_k = s_{k-1}^\\top y_{k-1} / y_{k-1}^\\top y_{k-1}` (eq. 7.20).
Strong Wolfe steps guarantee :math:`s^\\top y > 0`, which keeps :math:`H_k` positive definite; a pair with
:math:`s^\\top y \\le \\epsilon\\, y^\\top y` (rounding) is skipped rather than stored.

API.  ``opt.minimize(f, grad, x0)`` returns a :class:`MinimizeResult`; the optimizer object holds only its
hyper-parameters, so one instance can run many problems.  This is the cleaner form for a full-batch method: a line
search evaluates the objective at trial points of its choosing, which a torch-style ``step(closure)`` can only do
by writing each trial into the parameters in place and reading the gradient back through side effects (as
``torch.optim.LBFGS`` does), while with pure ``f(x)``/``grad(x)`` the iterate, the memory and the evaluation count
stay local and exact.

Stopping: :math:`\\|g_k\\|_\\infty \\le` ``gtol`` (converged), ``max_iter`` iterations, ``max_evaluations``
objective evaluations in all (a compute budget), a ``callback`` returning True, or a line search that fails
(L-BFGS first drops its memory and retries along :math:`-g_k`).

References: Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, chapters 3 and 7 (eq. 3.60 for the
initial step of gradient descent); Liu & Nocedal, "On the limited memory BFGS method for large scale
optimization", Math. Programming 45, 1989.
"""
import math
import numbers
from collections import deque
from dataclasses import dataclass

import numpy as np

from pyopt.arrays import real_number
from pyopt.linesearch import LineSearchError, _real, backtracking, strong_wolfe

__all__ = ["GradientDescent", "LBFGS", "MinimizeResult"]


@dataclass(frozen=True)
class MinimizeResult:
    """The outcome of ``minimize``: the final iterate and its value and gradient, ``iterations`` (accepted
    steps), ``evaluations`` (objective evaluations in all), ``converged`` (the gradient test passed), a
    ``message`` saying why it stopped, and ``values``: f at x0 and after every iteration (the loss curve)."""

    x: np.ndarray
    value: float
    grad: np.ndarray
    iterations: int
    evaluations: int
    converged: bool
    message: str
    values: tuple


def _value(v):
    v = np.asarray(v)
    if v.size != 1 or v.dtype.kind not in "fiu":
        raise TypeError(f"f must return a real scalar, got {v.dtype} array of shape {v.shape}")
    return float(v.reshape(()))


def _check_int(name, value, *, low=1, optional=False):
    if optional and value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


class _LineSearchOptimizer:
    """The loop shared by the full-batch optimizers; subclasses choose the direction and the first trial step."""

    def __init__(self, *, line_search, c1, c2, shrink, max_line_search_evaluations):
        if line_search not in ("strong_wolfe", "backtracking"):
            raise ValueError(f"line_search must be 'strong_wolfe' or 'backtracking', got {line_search!r}")
        self.line_search = line_search
        self.c1 = _real("c1", c1, low=0.0, high=1.0)
        self.c2 = _real("c2", c2, low=0.0, high=1.0)
        if not self.c1 < self.c2:
            raise ValueError(f"c1 and c2 must satisfy 0 < c1 < c2 < 1, got c1={self.c1}, c2={self.c2}")
        self.shrink = _real("shrink", shrink, low=0.0, high=1.0)
        self.max_line_search_evaluations = _check_int("max_line_search_evaluations", max_line_search_evaluations)

    # subclass hooks
    def _reset(self):
        pass

    def _direction(self, g):
        raise NotImplementedError

    def _initial_step(self, g, d):
        raise NotImplementedError

    def _record(self, s, y, step, g, d):
        pass

    def _search(self, f, grad, value_and_grad, x, d, value, g, initial_step, budget):
        kwargs = dict(c1=self.c1, initial_step=initial_step, max_evaluations=budget, f0=value, g0=g,
                      value_and_grad=value_and_grad)
        if self.line_search == "strong_wolfe":
            return strong_wolfe(f, grad, x, d, c2=self.c2, **kwargs)
        return backtracking(f, grad, x, d, shrink=self.shrink, **kwargs)

    def minimize(self, f, grad, x0, *, max_iter=1000, gtol=1e-6, max_evaluations=None, callback=None,
                 value_and_grad=None):
        """Minimizes ``f`` from ``x0``.

        Args:
          f, grad: ``f(x) -> float`` and ``grad(x) -> array``, x a 1-D float64 vector; or None with
            ``value_and_grad(x) -> (value, grad)``.
          x0: the starting point, a 1-D real vector (copied to float64; never written).
          max_iter: the most iterations (accepted line-search steps).
          gtol: converged when ``max(abs(grad)) <= gtol``.
          max_evaluations: a budget of objective evaluations in all (None: unbounded); the last line search
            is cut to what remains.
          callback: ``callback(iteration, x, value)`` after every iteration; returning True stops.

        Returns:
          A :class:`MinimizeResult`.
        """
        max_iter = _check_int("max_iter", max_iter, low=0)
        gtol = real_number(gtol, "gtol")
        if not (math.isfinite(gtol) and gtol >= 0):
            raise ValueError(f"gtol must be finite and >= 0, got {gtol}")
        max_evaluations = _check_int("max_evaluations", max_evaluations, optional=True)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        x = np.asarray(x0)
        if x.ndim != 1:
            raise ValueError(f"x0 must be a 1-D vector, got shape {x.shape}")
        if x.dtype.kind not in "fiu":
            raise TypeError(f"x0 must be a real vector, got dtype {x.dtype}")
        x = x.astype(np.float64)  # a copy: the caller's x0 is never written
        if not np.isfinite(x).all():
            raise ValueError("x0 must be finite")
        if value_and_grad is None:
            for name, fn in (("f", f), ("grad", grad)):
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
            value, g = _value(f(x)), np.array(grad(x), dtype=np.float64)
        else:
            if f is not None or grad is not None:
                raise TypeError("pass either f and grad, or value_and_grad (then f and grad must be None)")
            value, g = value_and_grad(x)
            value, g = _value(value), np.array(g, dtype=np.float64)
        if g.shape != x.shape:
            raise ValueError(f"grad returned shape {g.shape} but x0 has shape {x.shape}")
        if not (math.isfinite(value) and np.isfinite(g).all()):
            raise ValueError("f(x0) and grad(x0) must be finite")

        self._reset()
        evaluations, iterations, values = 1, 0, [value]
        converged, message = False, f"reached max_iter={max_iter}"
        while True:
            if np.max(np.abs(g), initial=0.0) <= gtol:
                converged, message = True, f"converged: max|grad| <= gtol={gtol}"
                break
            if iterations >= max_iter:
                break
            result = None
            for retry in (False, True):
                budget = self.max_line_search_evaluations
                if max_evaluations is not None:
                    budget = min(budget, max_evaluations - evaluations)
                    if budget < 1:
                        message = f"spent max_evaluations={max_evaluations}"
                        break
                d = self._direction(g)
                try:
                    result = self._search(f, grad, value_and_grad, x, d, value, g, self._initial_step(g, d),
                                          budget)
                    break
                except LineSearchError as error:
                    evaluations += error.evaluations
                    message = f"line search failed{' along -grad' if retry else ''}: {error}"
                    if max_evaluations is not None and evaluations >= max_evaluations:
                        message = f"spent max_evaluations={max_evaluations} (in a line search)"
                        break
                    if retry or not self._fallback_possible():
                        break
                    self._reset()  # a bad quasi-Newton model: forget it and retry along -grad
            if result is None:
                break
            evaluations += result.evaluations
            x_new = x + result.step * d
            self._record(x_new - x, result.grad - g, result.step, g, d)
            x, value, g = x_new, result.value, result.grad
            iterations += 1
            values.append(value)
            if callback is not None and callback(iterations, x, value):
                message = "stopped by callback"
                break
        return MinimizeResult(x=x, value=value, grad=g, iterations=iterations, evaluations=evaluations,
                              converged=converged, message=message, values=tuple(values))

    def _fallback_possible(self):
        return False


class GradientDescent(_LineSearchOptimizer):
    """Steepest descent, :math:`x_{k+1} = x_k - \\alpha_k g_k`, with :math:`\\alpha_k` from a line search.

    The first trial step is ``initial_step`` at the first iteration and then N&W eq. (3.60),
    :math:`\\alpha_k^0 = \\alpha_{k-1} \\|g_{k-1}\\|^2 / \\|g_k\\|^2` (the first-order decrease of the last step
    expected again), times ``growth``: 1 with strong Wolfe (which extrapolates by itself, so most iterations cost
    one evaluation), 2 with backtracking (which only shrinks, so it could never lengthen a step otherwise).

    Args:
      line_search: ``"strong_wolfe"`` (default) or ``"backtracking"`` (Armijo only).
      c1, c2: the Wolfe constants, ``0 < c1 < c2 < 1`` (``c2`` unused by backtracking).
      initial_step: the first trial step of the first iteration.
      growth: the factor (>= 1) on the eq. (3.60) guess; None for the default of the line search.
      shrink: the backtracking factor.
      max_line_search_evaluations: the budget of each line search.
    """

    def __init__(self, line_search="strong_wolfe", *, c1=1e-4, c2=0.9, initial_step=1.0, growth=None, shrink=0.5,
                 max_line_search_evaluations=25):
        super().__init__(line_search=line_search, c1=c1, c2=c2, shrink=shrink,
                         max_line_search_evaluations=max_line_search_evaluations)
        self.initial_step = _real("initial_step", initial_step, low=0.0)
        if growth is None:
            growth = 1.0 if line_search == "strong_wolfe" else 2.0
        self.growth = _real("growth", growth, low=0.0)
        if self.growth < 1:
            raise ValueError(f"growth must be >= 1, got {self.growth}")

    def _reset(self):
        self._last = None  # (step, g.d) of the previous iteration

    def _direction(self, g):
        return -g

    def _initial_step(self, g, d):
        if self._last is None:
            return self.initial_step
        step, slope = self._last
        guess = self.growth * step * slope / float(g @ d)
        return guess if math.isfinite(guess) and guess > 0 else self.initial_step  # g.d underflowed

    def _record(self, s, y, step, g, d):
        self._last = (step, float(g @ d))


class LBFGS(_LineSearchOptimizer):
    """Limited-memory BFGS with strong Wolfe steps: :math:`d_k = -H_k g_k` by the two-loop recursion.

    The first trial step is 1 (the quasi-Newton step is scaled by :math:`\\gamma_k`), except with an empty
    memory, where :math:`d = -g` and the first trial is :math:`\\min(1, 1/\\|g\\|_1)` so that the first step
    moves about one unit.  When a line search fails, the memory is dropped and the search retried along
    :math:`-g_k` once before giving up.

    Args:
      history_size: :math:`m`, the number of (s, y) pairs kept.
      c1, c2: the Wolfe constants, ``0 < c1 < c2 < 1`` (0.9 is the usual choice for quasi-Newton methods).
      max_line_search_evaluations: the budget of each line search.
    """

    def __init__(self, history_size=10, *, c1=1e-4, c2=0.9, max_line_search_evaluations=25):
        super().__init__(line_search="strong_wolfe", c1=c1, c2=c2, shrink=0.5,
                         max_line_search_evaluations=max_line_search_evaluations)
        self.history_size = _check_int("history_size", history_size)

    def _reset(self):
        self._memory = deque(maxlen=self.history_size)  # (s, y, 1 / s.y), oldest first

    def _fallback_possible(self):
        return len(self._memory) > 0

    def _direction(self, g):
        q = -g
        alphas = []
        for s, y, rho in reversed(self._memory):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        if self._memory:
            s, y, rho = self._memory[-1]
            q *= 1.0 / (rho * float(y @ y))  # gamma = s.y / y.y
        for (s, y, rho), alpha in zip(self._memory, reversed(alphas)):
            beta = rho * float(y @ q)
            q += (alpha - beta) * s
        if self._memory and not float(q @ g) < 0:
            self._memory.clear()  # rounding made H_k indefinite along g: fall back to steepest descent
            q = -g
        return q

    def _initial_step(self, g, d):
        norm1 = float(np.abs(g).sum())
        return 1.0 if self._memory or norm1 <= 1 else 1.0 / norm1

    def _record(self, s, y, step, g, d):
        sy, yy = float(s @ y), float(y @ y)
        if sy > np.finfo(np.float64).eps * yy:
            self._memory.append((s, y, 1.0 / sy))

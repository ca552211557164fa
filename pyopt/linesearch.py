"""Line searches along a descent direction: strong Wolfe (bracketing + zoom) and Armijo backtracking.

With :math:`x` = ``x``, :math:`d` = ``direction`` and :math:`\\phi(\\alpha) = f(x + \\alpha d)`, so that
:math:`\\phi'(\\alpha) = \\nabla f(x + \\alpha d)^\\top d` and :math:`\\phi'(0) < 0` for a descent direction, a
step :math:`\\alpha > 0` satisfies

.. math::

    \\phi(\\alpha) &\\le \\phi(0) + c_1 \\alpha \\phi'(0)   && \\text{sufficient decrease (Armijo)}\\\\
    |\\phi'(\\alpha)| &\\le c_2 |\\phi'(0)|                 && \\text{strong curvature condition}

with :math:`0 < c_1 < c_2 < 1` (``c1``, ``c2``).  Sufficient decrease forbids steps too long for the decrease they
bring; the curvature condition forbids steps too short, stopping near a stationary point of :math:`\\phi`.  Under
both, quasi-Newton updates keep :math:`s^\\top y > 0` (a positive-definite inverse Hessian approximation) and
Zoutendijk's theorem gives global convergence of descent methods.  :func:`backtracking` enforces only the first.

Conventions.  Each search returns a :class:`LineSearchResult` ``(step, value, grad, evaluations)``: the accepted
step, :math:`f` and :math:`\\nabla f` at ``x + step * direction``, and the number of objective evaluations it made
(calls of ``f``, or of ``value_and_grad``; the one at ``x`` included unless ``f0``/``g0`` are given).  A search
that cannot meet its conditions within ``max_evaluations`` (or before ``max_step``, or before its bracket shrinks
below rounding) raises :class:`LineSearchError`; it never returns a step that violates them.  Points are computed
in float64.  A trial point where :math:`f` or :math:`\\nabla f` is not finite (an overflow from too long a step)
counts as failing sufficient decrease, so the search retreats from it.

References: Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, algorithms 3.1 (backtracking), 3.5 (line
search) and 3.6 (zoom), eq. (3.59) (cubic interpolation); Moré & Thuente, "Line search algorithms with guaranteed
sufficient decrease", ACM TOMS 20(3), 1994 (the extrapolation bounds and the safeguards).
"""
import math
import numbers
from typing import NamedTuple

import numpy as np

from pyopt.arrays import real_number

__all__ = ["LineSearchResult", "LineSearchError", "strong_wolfe", "backtracking"]

_EPS = np.finfo(np.float64).eps
_ZOOM_MARGIN = 0.1               # zoom trials stay this fraction of the bracket away from its ends
_EXTRAPOLATE = (1.1, 4.0)        # bracketing grows the step by between 1.1x and 4x the last increment
_TIE = 64 * _EPS                 # values this close (relatively) are equal to within the rounding of f


class LineSearchResult(NamedTuple):
    """An accepted step: ``step``, ``value`` = f(x + step d), ``grad`` = grad f(x + step d), ``evaluations``."""

    step: float
    value: float
    grad: np.ndarray
    evaluations: int


class LineSearchError(RuntimeError):
    """No step met the conditions within the budget.  ``evaluations`` says what was spent; ``best`` is the
    evaluated trial with the lowest finite value (a :class:`LineSearchResult` whose ``grad`` is None where only
    ``f`` was called, or None), for a caller that wants to inspect it; it does not satisfy the conditions."""

    def __init__(self, message, *, evaluations, best=None):
        super().__init__(message)
        self.evaluations = evaluations
        self.best = best


class _Trial(NamedTuple):
    step: float
    value: float
    slope: float          # phi'(step), nan when not computed
    grad: object          # ndarray or None when not computed
    finite: bool


def _real(name, value, *, low=None, high=None, allow_inf=False):
    value = real_number(value, name)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value}")
    if (low is not None and not value > low) or (high is not None and not value < high):
        rule = f"> {low}" if high is None else f"in ({low}, {high})"
        raise ValueError(f"{name} must be {rule}, got {value}")
    return value


def _count(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _vector(name, value):
    a = np.asarray(value)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite, got non-finite entries")
    return a


class _Objective:
    """phi and phi' along the ray, with the evaluation budget and the bookkeeping of the best trial."""

    def __init__(self, f, grad, value_and_grad, x, direction, max_evaluations):
        if value_and_grad is not None:
            if f is not None or grad is not None:
                raise TypeError("pass either f and grad, or value_and_grad (then f and grad must be None)")
            if not callable(value_and_grad):
                raise TypeError(f"value_and_grad must be callable, got {type(value_and_grad).__name__}")
        else:
            for name, fn in (("f", f), ("grad", grad)):
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        self.f, self.grad_fn, self.value_and_grad = f, grad, value_and_grad
        self.x = _vector("x", x)
        self.direction = _vector("direction", direction)
        if self.direction.shape != self.x.shape:
            raise ValueError(f"direction has shape {self.direction.shape} but x has shape {self.x.shape}")
        self.max_evaluations = _count("max_evaluations", max_evaluations)
        self.evaluations = 0
        self.best = None

    def point(self, step):
        return self.x if step == 0 else self.x + step * self.direction

    def _scalar(self, v):
        v = np.asarray(v)
        if v.size != 1 or v.dtype.kind not in "fiu":
            raise TypeError(f"f must return a real scalar, got {v.dtype} array of shape {v.shape}")
        return float(v.reshape(()))

    def _gradient(self, g):
        # copied: a grad function that reuses one output buffer must not rewrite the gradients we keep
        g = np.array(g, dtype=np.float64)
        if g.shape != self.x.shape:
            raise ValueError(f"grad returned shape {g.shape} but x has shape {self.x.shape}")
        return g

    def _spend(self):
        if self.evaluations >= self.max_evaluations:
            raise LineSearchError(f"no step satisfied the conditions within max_evaluations="
                                  f"{self.max_evaluations} evaluations", evaluations=self.evaluations,
                                  best=self.best)
        self.evaluations += 1

    def evaluate(self, step, *, need_grad=True):
        """A trial at ``step``: the value, and the gradient and slope when ``need_grad`` (or when free)."""
        self._spend()
        p = self.point(step)
        if self.value_and_grad is not None:
            value, g = self.value_and_grad(p)
            value, g = self._scalar(value), self._gradient(g)
        else:
            value = self._scalar(self.f(p))
            g = self._gradient(self.grad_fn(p)) if need_grad else None
        return self._trial(step, value, g)

    def add_gradient(self, trial):
        """The gradient at an accepted value-only trial (a call of grad, not counted as an evaluation)."""
        return self._trial(trial.step, trial.value, self._gradient(self.grad_fn(self.point(trial.step))))

    def _trial(self, step, value, g):
        slope = float(np.vdot(g, self.direction)) if g is not None else math.nan
        finite = math.isfinite(value) and (g is None or (math.isfinite(slope) and bool(np.isfinite(g).all())))
        trial = _Trial(step, value, slope, g, finite)
        if step > 0 and math.isfinite(value) and (self.best is None or value < self.best.value):
            self.best = LineSearchResult(step, value, g, self.evaluations)
        return trial

    def start(self, f0, g0):
        """phi(0) and phi'(0), given or evaluated; raises unless they are finite and phi'(0) < 0."""
        if (f0 is None) != (g0 is None):
            raise ValueError("f0 and g0 must be given together (the value and the gradient at x) or both None")
        if f0 is None:
            trial = self.evaluate(0.0)
            if not math.isfinite(trial.value):
                raise ValueError(f"f(x) must be finite, got {trial.value}")
            if not np.isfinite(trial.grad).all():
                raise ValueError("grad(x) must be finite, got non-finite entries")
        else:
            value = _real("f0", f0)
            g = _vector("g0", g0)
            if g.shape != self.x.shape:
                raise ValueError(f"g0 has shape {g.shape} but x has shape {self.x.shape}")
            trial = self._trial(0.0, value, g)
        if not math.isfinite(trial.slope):
            raise ValueError(f"grad(x) . direction must be finite, got {trial.slope}")
        if trial.slope >= 0:
            raise ValueError(f"direction is not a descent direction: grad(x) . direction = {trial.slope:.6g} "
                             f"must be < 0")
        return trial

    def result(self, trial):
        return LineSearchResult(trial.step, trial.value, trial.grad, self.evaluations)

    def fail(self, message):
        raise LineSearchError(message, evaluations=self.evaluations, best=self.best)


def _cubic_minimizer(a, b):
    """The minimizer of the cubic through (a.step, a.value, a.slope) and (b.step, ...) (N&W eq. 3.59), or None
    when the cubic has no real local minimizer or the data are not finite."""
    if not (a.finite and b.finite) or a.step == b.step:
        return None
    d1 = a.slope + b.slope - 3 * (a.value - b.value) / (a.step - b.step)
    radicand = d1 * d1 - a.slope * b.slope
    if not (radicand >= 0 and math.isfinite(radicand)):
        return None
    d2 = math.copysign(math.sqrt(radicand), b.step - a.step)
    denominator = b.slope - a.slope + 2 * d2
    if denominator == 0:
        return None
    t = b.step - (b.step - a.step) * (b.slope + d2 - d1) / denominator
    return t if math.isfinite(t) else None


def strong_wolfe(f, grad, x, direction, *, c1=1e-4, c2=0.9, initial_step=1.0, max_step=math.inf,
                 max_evaluations=25, f0=None, g0=None, value_and_grad=None):
    """A step satisfying the strong Wolfe conditions (Nocedal & Wright algorithms 3.5 and 3.6).

    Bracketing (3.5) tries ``initial_step`` (at most ``max_step``) and grows the step until an interval is known
    to contain acceptable steps: the trial breaks sufficient decrease or does not improve on the previous one, or
    its slope turns non-negative.  Each new trial is the minimizer of the cubic through the last two trials'
    values and slopes, kept within 1.1 and 4 times the last increment beyond the current step.  Zoom (3.6) then
    shrinks the bracket ``[lo, hi]`` (``lo`` the best step meeting sufficient decrease) by the cubic minimizer of
    its ends, safeguarded to lie in the middle 80% of the bracket (bisection when the cubic has no minimizer or an
    end is not finite), so each trial cuts the bracket by at least 10% and the search terminates.

    Args:
      f, grad: ``f(x) -> float`` and ``grad(x) -> array`` of x's shape; both are called at every trial.
      x, direction: the point and the search direction (same shape; ``grad(x) . direction < 0``).
      c1, c2: the sufficient-decrease and curvature constants, ``0 < c1 < c2 < 1``.  ``c2 = 0.9`` suits
        quasi-Newton methods; ``0.1`` gives a more exact search (nonlinear conjugate gradients).
      initial_step: the first trial (1 is the natural step of Newton-like directions).
      max_step: no trial goes beyond it; reaching it while ``f`` still decreases steeply raises.
      max_evaluations: the budget of objective evaluations, the one at ``x`` included.
      f0, g0: ``f(x)`` and ``grad(x)`` when already known (saves one evaluation); together or not at all.
      value_and_grad: ``x -> (f(x), grad(x))`` in one call, instead of ``f`` and ``grad`` (pass them as None).

    Returns:
      ``LineSearchResult(step, value, grad, evaluations)``.

    Raises:
      ValueError: a non-descent direction, ``c1``/``c2`` outside ``0 < c1 < c2 < 1``, non-finite inputs.
      LineSearchError: no acceptable step within the budget, before ``max_step``, or above rounding.
    """
    c1 = _real("c1", c1, low=0.0, high=1.0)
    c2 = _real("c2", c2, low=0.0, high=1.0)
    if not c1 < c2:
        raise ValueError(f"c1 and c2 must satisfy 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
    initial_step = _real("initial_step", initial_step, low=0.0)
    max_step = _real("max_step", max_step, low=0.0, allow_inf=True)
    obj = _Objective(f, grad, value_and_grad, x, direction, max_evaluations)
    zero = obj.start(f0, g0)
    phi0, dphi0 = zero.value, zero.slope

    def armijo(trial):
        return trial.finite and trial.value <= phi0 + c1 * trial.step * dphi0

    def curvature(trial):
        return abs(trial.slope) <= -c2 * dphi0

    prev, step = zero, min(initial_step, max_step)
    while True:
        cur = obj.evaluate(step)
        if not armijo(cur) or (prev is not zero and cur.value >= prev.value):
            return _zoom(obj, prev, cur, armijo, curvature)
        if curvature(cur):
            return obj.result(cur)
        if cur.slope >= 0:
            return _zoom(obj, cur, prev, armijo, curvature)
        if step >= max_step:
            obj.fail(f"reached max_step={max_step} with f still decreasing (slope {cur.slope:.3g}); "
                     f"f may be unbounded below along direction")
        increment = step - prev.step
        low, high = step + _EXTRAPOLATE[0] * increment, step + _EXTRAPOLATE[1] * increment
        t = _cubic_minimizer(prev, cur)
        t = high if t is None or t <= step else min(max(t, low), high)
        prev, step = cur, min(t, max_step)


def _worse(cur, lo, hi):
    """N&W's ``phi(cur) >= phi(lo)``, except for a tie within rounding, which the slopes decide instead: near a
    minimizer the values differ by less than the rounding of f (phi ~ phi* + phi'' (a - a*)^2 / 2) while the
    slopes still say which side of it each trial lies on.  A trial that ties with ``lo`` and descends towards
    ``hi`` becomes the new ``lo``.  Only the bracket update is relaxed: acceptance checks the conditions as is."""
    if cur.value < lo.value:
        return False
    tie = cur.value - lo.value <= _TIE * max(abs(cur.value), abs(lo.value))
    return not (tie and cur.slope * (hi.step - cur.step) < 0)


def _zoom(obj, lo, hi, armijo, curvature):
    """Algorithm 3.6: ``lo`` meets sufficient decrease with the lowest value so far and ``phi'(lo)`` points into
    the bracket (towards ``hi``); the invariant holds after every update."""
    while True:
        a, b = min(lo.step, hi.step), max(lo.step, hi.step)
        width = b - a
        if width <= 4 * _EPS * b:
            obj.fail(f"the bracket [{a:.17g}, {b:.17g}] shrank below rounding without an acceptable step "
                     f"(is grad consistent with f?)")
        t = _cubic_minimizer(lo, hi)
        t = 0.5 * (a + b) if t is None else min(max(t, a + _ZOOM_MARGIN * width), b - _ZOOM_MARGIN * width)
        cur = obj.evaluate(t)
        if not armijo(cur) or _worse(cur, lo, hi):
            hi = cur
        else:
            if curvature(cur):
                return obj.result(cur)
            if cur.slope * (hi.step - lo.step) >= 0:
                hi = lo
            lo = cur


def backtracking(f, grad, x, direction, *, c1=1e-4, shrink=0.5, initial_step=1.0, max_evaluations=40,
                 f0=None, g0=None, value_and_grad=None):
    """The first of ``initial_step * shrink**k``, k = 0, 1, ..., meeting sufficient decrease (N&W algorithm 3.1).

    .. math::  \\phi(\\alpha) \\le \\phi(0) + c_1 \\alpha \\phi'(0), \\qquad
               \\alpha_{k+1} = \\rho\\, \\alpha_k

    Symbols: :math:`c_1` = ``c1``, :math:`\\rho` = ``shrink``.  Only ``f`` is called at rejected trials; ``grad``
    is called at ``x`` (unless ``g0`` is given) and at the accepted step, and those calls are not counted as
    evaluations.  Backtracking never lengthens a step: with ``initial_step`` too small it accepts that step.  A
    trial with a non-finite gradient is rejected like one that fails sufficient decrease.

    Args:
      f, grad, x, direction, f0, g0, value_and_grad: as :func:`strong_wolfe`.
      c1: the sufficient-decrease constant, ``0 < c1 < 1``.
      shrink: the factor between trials, ``0 < shrink < 1``.
      initial_step: the first trial.
      max_evaluations: the budget of calls of ``f`` (or ``value_and_grad``), the one at ``x`` included.

    Returns:
      ``LineSearchResult(step, value, grad, evaluations)``.

    Raises:
      ValueError: a non-descent direction, ``c1`` or ``shrink`` outside ``(0, 1)``, non-finite inputs.
      LineSearchError: no step met sufficient decrease within ``max_evaluations``.
    """
    c1 = _real("c1", c1, low=0.0, high=1.0)
    shrink = _real("shrink", shrink, low=0.0, high=1.0)
    step = _real("initial_step", initial_step, low=0.0)
    obj = _Objective(f, grad, value_and_grad, x, direction, max_evaluations)
    zero = obj.start(f0, g0)
    while True:
        cur = obj.evaluate(step, need_grad=False)
        if cur.finite and cur.value <= zero.value + c1 * step * zero.slope:
            if cur.grad is None:
                cur = obj.add_gradient(cur)
            if cur.finite:
                return obj.result(cur)
        step *= shrink
        if step == 0:
            obj.fail("the step underflowed to 0 without sufficient decrease")

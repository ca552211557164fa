"""pyopt.linesearch and the full-batch optimizers: the Wolfe/Armijo conditions hold at every returned step,
errors and budgets, and convergence of GradientDescent and LBFGS."""
import math

import numpy as np
import pytest

from pyopt.linesearch import LineSearchError, LineSearchResult, backtracking, strong_wolfe
from pyopt.optim.linesearch_optim import LBFGS, GradientDescent, MinimizeResult


# ---- problems: (f, grad) pairs ---------------------------------------------------------------------------------

def quadratic(n=8, cond=100.0, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.logspace(0, np.log10(cond), n)) @ q.T
    a = (a + a.T) / 2
    b = rng.standard_normal(n)
    return (lambda x: 0.5 * x @ a @ x - b @ x), (lambda x: a @ x - b), a, b


def rosenbrock(x):
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def rosenbrock_grad(x):
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return g


def logistic(n_samples=300, n_features=6, l2=1e-3, seed=1):
    """Mean logistic loss with an L2 term, on separable-ish data (labels from a random linear rule + noise)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n_samples, n_features)) * np.linspace(0.5, 3.0, n_features)
    labels = np.sign(features @ rng.standard_normal(n_features) + 0.5 * rng.standard_normal(n_samples))

    def f(w):
        return float(np.mean(np.logaddexp(0.0, -labels * (features @ w))) + 0.5 * l2 * w @ w)

    def grad(w):
        margin = labels * (features @ w)
        return features.T @ (-labels * np.exp(-np.logaddexp(0.0, margin))) / n_samples + l2 * w

    return f, grad


QF, QG, QA, QB = quadratic()
LF, LG = logistic()
PROBLEMS = {"quadratic": (QF, QG, 8), "rosenbrock2": (rosenbrock, rosenbrock_grad, 2),
            "rosenbrock6": (rosenbrock, rosenbrock_grad, 6), "logistic": (LF, LG, 6)}


class Counted:
    """Wraps f and grad and counts the calls."""

    def __init__(self, f, grad):
        self._f, self._grad, self.f_calls, self.grad_calls = f, grad, 0, 0

    def f(self, x):
        self.f_calls += 1
        return self._f(x)

    def grad(self, x):
        self.grad_calls += 1
        return self._grad(x)


def starts_and_directions(n, grad, seed):
    """Starting points and descent directions: -g at three scales (exercising extrapolation and zoom) and
    random directions flipped into the descent half-space."""
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x = rng.uniform(-2, 2, n)
        g = grad(x)
        yield x, -g
        yield x, -g * 1e-4 / np.linalg.norm(g)
        yield x, -g * 1e3
        for _ in range(2):
            d = rng.standard_normal(n)
            if d @ g > 0:
                d = -d
            yield x, d


def assert_strong_wolfe(f, grad, x, d, step, c1, c2):
    """Recomputes phi and phi' at the step (not trusting the search) and checks both conditions."""
    phi0, dphi0 = f(x), grad(x) @ d
    phi, dphi = f(x + step * d), grad(x + step * d) @ d
    assert step > 0
    assert phi <= phi0 + c1 * step * dphi0, f"sufficient decrease fails: {phi} > {phi0} + {c1 * step * dphi0}"
    assert abs(dphi) <= c2 * abs(dphi0), f"curvature fails: |{dphi}| > {c2} * |{dphi0}|"


def test_condition_check_can_fail():
    """The checker rejects a step too long (phi back at phi(0)) and one too short (slope barely changed)."""
    x = np.zeros(8)
    d = np.linalg.solve(QA, QB)  # the Newton direction: step 1 is the exact minimizer along d
    assert_strong_wolfe(QF, QG, x, d, 1.0, 1e-4, 0.1)
    with pytest.raises(AssertionError, match="sufficient decrease"):
        assert_strong_wolfe(QF, QG, x, d, 2.0, 1e-4, 0.9)
    with pytest.raises(AssertionError, match="curvature"):
        assert_strong_wolfe(QF, QG, x, d, 1e-3, 1e-4, 0.9)


# ---- strong Wolfe ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c1,c2", [(1e-4, 0.9), (1e-4, 0.1), (0.3, 0.5)])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_strong_wolfe_conditions_hold(problem, c1, c2):
    f, grad, n = PROBLEMS[problem]
    for k, (x, d) in enumerate(starts_and_directions(n, grad, seed=n)):
        counted = Counted(f, grad)
        r = strong_wolfe(counted.f, counted.grad, x, d, c1=c1, c2=c2, max_evaluations=40)
        assert isinstance(r, LineSearchResult)
        assert_strong_wolfe(f, grad, x, d, r.step, c1, c2)
        assert r.value == f(x + r.step * d) and np.array_equal(r.grad, grad(x + r.step * d))
        assert r.evaluations == counted.f_calls == counted.grad_calls <= 40, (k, r.evaluations)


def _more_thuente_functions():
    """The six test functions of Moré & Thuente (1994), section 5, as (phi, phi', c1, c2); c1 < c2 where the
    paper takes them equal (our searches require c1 < c2)."""
    def gamma(beta):
        return math.sqrt(1 + beta * beta) - beta

    def yanai(b1, b2):
        return (lambda a: gamma(b1) * math.sqrt((1 - a) ** 2 + b2**2) + gamma(b2) * math.sqrt(a * a + b1 * b1),
                lambda a: gamma(b1) * (a - 1) / math.sqrt((1 - a) ** 2 + b2**2)
                + gamma(b2) * a / math.sqrt(a * a + b1 * b1), 1e-4, 1e-3)

    b, ell = 0.01, 39

    def phi3(a):
        base = 1 - a if a <= 1 - b else (a - 1 if a >= 1 + b else (a - 1) ** 2 / (2 * b) + b / 2)
        return base + 2 * (1 - b) / (ell * math.pi) * math.sin(ell * math.pi * a / 2)

    def dphi3(a):
        base = -1 if a <= 1 - b else (1 if a >= 1 + b else (a - 1) / b)
        return base + (1 - b) * math.cos(ell * math.pi * a / 2)

    return {
        "mt1": (lambda a: -a / (a * a + 2), lambda a: (a * a - 2) / (a * a + 2) ** 2, 1e-3, 0.1),
        # phi'(0) ~ -5e-7: the minimizer must be located to ~2e-9, where values tie within rounding
        "mt2": (lambda a: (a + 0.004) ** 5 - 2 * (a + 0.004) ** 4,
                lambda a: 5 * (a + 0.004) ** 4 - 8 * (a + 0.004) ** 3, 0.05, 0.1),
        "mt3": (phi3, dphi3, 0.05, 0.1),  # 39 wiggles superposed on a kinked ramp
        "mt4": yanai(1e-3, 1e-3), "mt5": yanai(1e-2, 1e-3), "mt6": yanai(1e-3, 1e-2),
    }


MORE_THUENTE = _more_thuente_functions()


@pytest.mark.parametrize("initial_step", [1e-3, 1e-1, 1e1, 1e3])
@pytest.mark.parametrize("name", list(MORE_THUENTE))
def test_more_thuente_functions(name, initial_step):
    """The classic hard cases for line searches, from the paper's four initial steps: both conditions hold and
    the evaluations stay near the paper's counts (at most 17 here; Moré-Thuente report up to 13)."""
    phi, dphi, c1, c2 = MORE_THUENTE[name]
    f, grad = (lambda x: phi(x[0])), (lambda x: np.array([dphi(x[0])]))
    x, d = np.zeros(1), np.ones(1)
    r = strong_wolfe(f, grad, x, d, c1=c1, c2=c2, initial_step=initial_step, max_evaluations=100)
    assert_strong_wolfe(f, grad, x, d, r.step, c1, c2)
    assert r.evaluations <= 20


def test_result_is_the_documented_named_tuple():
    x, d = np.zeros(8), -QG(np.zeros(8))
    r = strong_wolfe(QF, QG, x, d)
    assert LineSearchResult._fields == ("step", "value", "grad", "evaluations")
    step, value, grad, evaluations = r
    assert (step, value, evaluations) == (r.step, r.value, r.evaluations) and grad is r.grad
    assert isinstance(step, float) and isinstance(value, float) and isinstance(evaluations, int)


def test_newton_step_accepted_at_once():
    """On a quadratic the Newton direction's unit step has slope 0: accepted with the first trial."""
    x = np.ones(8)
    g = QG(x)
    d = -np.linalg.solve(QA, g)
    r = strong_wolfe(QF, QG, x, d, c2=0.1, f0=QF(x), g0=g)
    assert r.step == 1.0 and r.evaluations == 1
    np.testing.assert_allclose(x + d, np.linalg.solve(QA, QB), rtol=1e-10)


def test_f0_g0_save_one_evaluation_and_give_the_same_step():
    x = np.array([-1.2, 1.0])
    d = -rosenbrock_grad(x)
    plain = strong_wolfe(rosenbrock, rosenbrock_grad, x, d)
    given = strong_wolfe(rosenbrock, rosenbrock_grad, x, d, f0=rosenbrock(x), g0=rosenbrock_grad(x))
    assert given.step == plain.step and given.evaluations == plain.evaluations - 1


def test_value_and_grad():
    calls = []

    def value_and_grad(x):
        calls.append(1)
        return rosenbrock(x), rosenbrock_grad(x)

    x = np.array([0.3, -0.4, 1.5])
    d = -rosenbrock_grad(x)
    r = strong_wolfe(None, None, x, d, value_and_grad=value_and_grad)
    assert r.step == strong_wolfe(rosenbrock, rosenbrock_grad, x, d).step
    assert r.evaluations == len(calls)
    rb = backtracking(None, None, x, d, value_and_grad=value_and_grad)
    assert rb.step == backtracking(rosenbrock, rosenbrock_grad, x, d).step
    with pytest.raises(TypeError, match="value_and_grad"):
        strong_wolfe(rosenbrock, None, x, d, value_and_grad=value_and_grad)


def test_grad_reusing_its_output_buffer():
    """A grad function writing into one buffer must not corrupt the gradients the search keeps."""
    buffer = np.empty(6)

    def grad(x):
        buffer[...] = rosenbrock_grad(x)
        return buffer

    x = np.full(6, -0.5)
    d = -rosenbrock_grad(x) * 1e3  # forces a zoom, which reuses stored gradients
    r = strong_wolfe(rosenbrock, grad, x, d)
    assert_strong_wolfe(rosenbrock, rosenbrock_grad, x, d, r.step, 1e-4, 0.9)
    assert np.array_equal(r.grad, rosenbrock_grad(x + r.step * d))


def test_non_finite_trials_are_retreated_from():
    """f = inf beyond a radius (an overflow): the search comes back inside and meets both conditions."""
    def f(x):
        return np.inf if np.linalg.norm(x) > 3 else QF(x)

    def grad(x):
        return np.full_like(x, np.nan) if np.linalg.norm(x) > 3 else QG(x)

    x = np.zeros(8)
    d = -QG(x) * 1e4
    r = strong_wolfe(f, grad, x, d)
    assert np.linalg.norm(x + r.step * d) <= 3
    assert_strong_wolfe(QF, QG, x, d, r.step, 1e-4, 0.9)


def test_max_step_caps_every_trial():
    x = np.array([-1.2, 1.0])
    d = -rosenbrock_grad(x) * 1e-6  # the natural step is ~1e4: capped at 50, f still decreasing there
    seen = []

    def f(p):
        seen.append(p)
        return rosenbrock(p)

    with pytest.raises(LineSearchError, match="max_step"):
        strong_wolfe(f, rosenbrock_grad, x, d, max_step=50.0)
    steps = [(p - x)[0] / d[0] for p in seen[1:]]
    assert max(steps) == pytest.approx(50.0)


def test_unbounded_below_raises_within_budget():
    """A linear f never meets the curvature condition: the search must raise, not return a step."""
    c = np.array([1.0, -2.0, 0.5])
    counted = Counted(lambda x: float(c @ x), lambda x: c.copy())
    with pytest.raises(LineSearchError) as info:
        strong_wolfe(counted.f, counted.grad, np.zeros(3), -c, max_evaluations=7)
    assert info.value.evaluations == counted.f_calls == 7
    assert info.value.best is not None and info.value.best.value < 0


def test_inconsistent_gradient_raises():
    """grad is minus the true gradient: f rises along the claimed descent direction, nothing is acceptable."""
    counted = Counted(QF, lambda x: -QG(x))
    x = np.ones(8)
    d = QG(x)  # a descent direction for the wrong gradient, an ascent direction for f
    with pytest.raises(LineSearchError):
        strong_wolfe(counted.f, counted.grad, x, d, max_evaluations=60)
    assert counted.f_calls <= 60
    with pytest.raises(LineSearchError):
        backtracking(counted.f, counted.grad, x, d, max_evaluations=10)


@pytest.mark.parametrize("search", [strong_wolfe, backtracking])
def test_non_descent_direction_raises(search):
    x = np.array([-1.2, 1.0])
    g = rosenbrock_grad(x)
    for d in (g, np.zeros(2), np.array([-g[1], g[0]])):  # ascent, zero, orthogonal
        with pytest.raises(ValueError, match="descent direction"):
            search(rosenbrock, rosenbrock_grad, x, d)


@pytest.mark.parametrize("kwargs", [dict(c1=0.0), dict(c1=0.5, c2=0.5), dict(c1=0.9, c2=0.1), dict(c2=1.0),
                                    dict(c1=-1e-4), dict(c2=float("nan")), dict(initial_step=0.0),
                                    dict(initial_step=-1.0), dict(max_step=0.0), dict(max_evaluations=0),
                                    dict(f0=1.0), dict(f0=float("nan"), g0=np.ones(2)),
                                    dict(c2=10**400), dict(initial_step=10**400)])  # ints past the float range
def test_strong_wolfe_bad_arguments(kwargs):
    x = np.array([-1.2, 1.0])
    with pytest.raises(ValueError, match=next(iter(kwargs)).rstrip("0")):
        strong_wolfe(rosenbrock, rosenbrock_grad, x, -rosenbrock_grad(x), **kwargs)


def test_bad_inputs_raise():
    x, d = np.array([-1.2, 1.0]), -rosenbrock_grad(np.array([-1.2, 1.0]))
    cases = [
        (dict(x=np.array([np.nan, 1.0])), ValueError, "x must be finite"),
        (dict(direction=np.array([np.inf, 1.0])), ValueError, "direction must be finite"),
        (dict(direction=np.ones(3)), ValueError, "shape"),
        (dict(x=np.array([1 + 1j, 0])), TypeError, "x must be a real"),
        (dict(f=lambda p: np.nan), ValueError, r"f\(x\) must be finite"),
        (dict(f=lambda p: np.ones(2)), TypeError, "scalar"),
        (dict(grad=lambda p: np.ones(3)), ValueError, "grad returned shape"),
        (dict(f="f"), TypeError, "f must be callable"),
        (dict(g0=np.array([np.nan, 0.0]), f0=1.0), ValueError, "g0"),
        (dict(c1=True), TypeError, "c1"),
        (dict(max_evaluations=2.5), TypeError, "max_evaluations"),
    ]
    for overrides, exc, match in cases:
        args = dict(f=rosenbrock, grad=rosenbrock_grad, x=x, direction=d)
        kwargs = {k: overrides.pop(k) for k in list(overrides) if k not in args}
        args.update(overrides)
        with pytest.raises(exc, match=match):
            strong_wolfe(args["f"], args["grad"], args["x"], args["direction"], **kwargs)


# ---- backtracking ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c1,shrink", [(1e-4, 0.5), (0.4, 0.3), (0.1, 0.9)])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_backtracking_armijo_and_first_acceptable(problem, c1, shrink):
    f, grad, n = PROBLEMS[problem]
    for x, d in starts_and_directions(n, grad, seed=n + 1):
        counted = Counted(f, grad)
        r = backtracking(counted.f, counted.grad, x, d, c1=c1, shrink=shrink, initial_step=2.0,
                         max_evaluations=400)
        phi0, dphi0 = f(x), grad(x) @ d
        assert r.value == f(x + r.step * d) <= phi0 + c1 * r.step * dphi0
        k = int(round(np.log(r.step / 2.0) / np.log(shrink)))
        assert r.step == pytest.approx(2.0 * shrink**k, rel=1e-13)  # the step is on the geometric grid...
        if k > 0:  # ...and the previous, longer one failed sufficient decrease
            assert not f(x + (r.step / shrink) * d) <= phi0 + c1 * (r.step / shrink) * dphi0
        assert r.evaluations == counted.f_calls == k + 2  # x, then k + 1 trials
        assert counted.grad_calls == 2 and np.array_equal(r.grad, grad(x + r.step * d))


@pytest.mark.parametrize("kwargs", [dict(c1=1.0), dict(c1=0.0), dict(shrink=1.0), dict(shrink=0.0),
                                    dict(initial_step=0.0), dict(max_evaluations=0)])
def test_backtracking_bad_arguments(kwargs):
    x = np.array([-1.2, 1.0])
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        backtracking(rosenbrock, rosenbrock_grad, x, -rosenbrock_grad(x), **kwargs)


# ---- GradientDescent and LBFGS ---------------------------------------------------------------------------------

def test_lbfgs_rosenbrock():
    for x0, max_iterations in [(np.array([-1.2, 1.0]), 60), (np.full(10, -1.0), 150)]:
        counted = Counted(rosenbrock, rosenbrock_grad)
        r = LBFGS(history_size=10).minimize(counted.f, counted.grad, x0, gtol=1e-7)
        assert isinstance(r, MinimizeResult) and r.converged, r.message
        np.testing.assert_allclose(r.x, 1.0, atol=1e-6)
        assert r.iterations <= max_iterations and np.abs(r.grad).max() <= 1e-7
        assert r.evaluations <= 1.3 * r.iterations + 5  # 45/36 and 87/73 observed
        assert r.evaluations == counted.f_calls == counted.grad_calls
        assert len(r.values) == r.iterations + 1 and r.values[-1] == r.value
        assert all(b < a for a, b in zip(r.values, r.values[1:]))  # Wolfe steps always decrease f


@pytest.mark.parametrize("history_size", [1, 5, 20])
def test_lbfgs_quadratic(history_size):
    f, grad, a, b = quadratic(n=20, cond=100.0, seed=3)
    # gtol: much below 1e-6 the decrease a step brings, ~ g^2 / (2 lambda), is under the rounding of f, and no
    # search that compares values of f can make progress (scipy's L-BFGS-B stops there too: ABNORMAL_TERMINATION)
    r = LBFGS(history_size).minimize(f, grad, np.zeros(20), gtol=1e-6, max_iter=2000)
    assert r.converged, r.message
    np.testing.assert_allclose(r.x, np.linalg.solve(a, b), rtol=0, atol=1e-5)  # |x - x*| <= |g| / lambda_min
    assert r.iterations <= {1: 150, 5: 120, 20: 60}[history_size]  # 82, 78, 49 observed: memory helps
    # the gamma scaling of H0 makes the unit step acceptable almost always (without it: 2-3x the evaluations)
    assert r.evaluations <= 1.2 * r.iterations + 5


def test_lbfgs_logistic_regression():
    r = LBFGS().minimize(LF, LG, np.zeros(6), gtol=1e-8)
    assert r.converged and r.iterations < 40, r.message  # 25 observed
    gd = GradientDescent().minimize(LF, LG, np.zeros(6), gtol=1e-8, max_iter=20000)
    assert gd.converged and gd.value == pytest.approx(r.value, rel=1e-10)


@pytest.mark.parametrize("line_search", ["strong_wolfe", "backtracking"])
def test_gradient_descent_quadratic_and_rosenbrock(line_search):
    f, grad, a, b = quadratic(n=10, cond=30.0, seed=4)
    r = GradientDescent(line_search).minimize(f, grad, np.ones(10), gtol=1e-6, max_iter=5000)
    assert r.converged, r.message
    np.testing.assert_allclose(r.x, np.linalg.solve(a, b), rtol=0, atol=1e-5)
    # steepest descent zig-zags along Rosenbrock's valley for thousands of steps: a loose gtol keeps this short
    r = GradientDescent(line_search, c2=0.1).minimize(rosenbrock, rosenbrock_grad, np.array([-1.2, 1.0]),
                                                      gtol=1e-3, max_iter=20000)
    assert r.converged, r.message
    np.testing.assert_allclose(r.x, 1.0, atol=1e-2)
    assert r.value < 1e-5 and all(b <= a for a, b in zip(r.values, r.values[1:]))


def test_evaluation_budget_and_callback():
    counted = Counted(rosenbrock, rosenbrock_grad)
    r = LBFGS().minimize(counted.f, counted.grad, np.full(10, -1.0), max_evaluations=30)
    assert not r.converged and "max_evaluations" in r.message
    assert r.evaluations == counted.f_calls <= 30
    seen = []
    r = LBFGS().minimize(rosenbrock, rosenbrock_grad, np.full(10, -1.0),
                         callback=lambda k, x, value: seen.append((k, value)) or k == 5)
    assert r.iterations == 5 and r.message == "stopped by callback" and [k for k, _ in seen] == [1, 2, 3, 4, 5]
    assert [v for _, v in seen] == list(r.values[1:])


def test_lbfgs_with_a_grad_that_reuses_its_buffer():
    """The optimizer keeps g_k while computing g_{k+1}: a grad writing into one buffer must not make y = 0."""
    buffer = np.empty(10)

    def grad(x):
        buffer[...] = rosenbrock_grad(x)
        return buffer

    x0 = np.full(10, -1.0)
    reused = LBFGS().minimize(rosenbrock, grad, x0, gtol=1e-7)
    fresh = LBFGS().minimize(rosenbrock, rosenbrock_grad, x0, gtol=1e-7)
    assert reused.converged and np.array_equal(reused.x, fresh.x) and reused.iterations == fresh.iterations


def test_minimize_value_and_grad_and_x0_untouched():
    x0 = np.array([-1.2, 1.0])
    r = LBFGS().minimize(None, None, x0, value_and_grad=lambda x: (rosenbrock(x), rosenbrock_grad(x)))
    assert r.converged and np.array_equal(x0, [-1.2, 1.0])
    assert np.array_equal(r.x, LBFGS().minimize(rosenbrock, rosenbrock_grad, x0).x)


def test_lbfgs_reports_a_failed_line_search():
    f, grad, _, _ = quadratic(n=5, seed=5)
    r = LBFGS().minimize(f, lambda x: -grad(x), np.ones(5))  # grad inconsistent with f
    assert not r.converged and "line search failed" in r.message and r.iterations == 0


@pytest.mark.parametrize("make,exc,match", [
    (lambda: LBFGS(history_size=0), ValueError, "history_size"),
    (lambda: LBFGS(history_size=2.0), TypeError, "history_size"),
    (lambda: LBFGS(c1=0.9, c2=0.5), ValueError, "c1"),
    (lambda: GradientDescent("wolfe"), ValueError, "line_search"),
    (lambda: GradientDescent(growth=0.5), ValueError, "growth"),
    (lambda: GradientDescent(shrink=1.5), ValueError, "shrink"),
    (lambda: GradientDescent(growth=10**400), ValueError, "growth"),  # past the float range: not OverflowError
    (lambda: GradientDescent(growth="2"), TypeError, "growth must be a real number, got str"),
    (lambda: LBFGS().minimize(rosenbrock, rosenbrock_grad, np.zeros((2, 2))), ValueError, "x0"),
    (lambda: LBFGS().minimize(rosenbrock, rosenbrock_grad, np.array([np.nan, 0])), ValueError, "x0"),
    (lambda: LBFGS().minimize(rosenbrock, rosenbrock_grad, np.zeros(2), gtol=-1.0), ValueError, "gtol"),
    (lambda: LBFGS().minimize(rosenbrock, rosenbrock_grad, np.zeros(2), gtol=10**400), ValueError, "gtol"),
    (lambda: LBFGS().minimize(rosenbrock, rosenbrock_grad, np.zeros(2), max_iter=-1), ValueError, "max_iter"),
    (lambda: LBFGS().minimize(rosenbrock, None, np.zeros(2)), TypeError, "grad"),
])
def test_optimizer_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()

"""Learning-rate schedules: stepping == closed form (RELIABILITY invariant 12), parity with torch.optim.lr_scheduler,
chaining, state_dict, bad arguments, huge step counts, and that an optimizer steps with the scheduled lr."""
import copy
import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from _compare import assert_close

from pyopt import schedules as S
from pyopt.optim import Adam

LRS = (0.1, 0.03)  # two param groups with different base rates
N_STEPS = 600
# torch steps most schedules by a recursion (lr *= ratio): it agrees with the closed form to a few ulps per step;
# its recursive cosine drifts to about 2e-13 relative over 600 steps near the eta_min end.
TORCH_RTOL, TORCH_ATOL = 1e-12, 1e-13 * max(LRS)


def make_opt(lrs=LRS):
    """The smallest duck-typed optimizer: an object with param_groups."""
    return SimpleNamespace(param_groups=[{"lr": lr} for lr in lrs])


def lrs_of(opt):
    return [g["lr"] for g in opt.param_groups]


# name -> (scheduler builder, the same schedule as a pure function of (step, lr0))
SIMPLE = {
    "step": (lambda o: S.StepLR(o, 7, 0.7), lambda t, lr: S.step_lr(t, lr, 7, 0.7)),
    "multi_step": (lambda o: S.MultiStepLR(o, [3, 50, 51, 400], 0.5),
                   lambda t, lr: S.multi_step_lr(t, lr, [3, 50, 51, 400], 0.5)),
    "exponential": (lambda o: S.ExponentialLR(o, 0.99), lambda t, lr: S.exponential_lr(t, lr, 0.99)),
    "inverse_time": (lambda o: S.InverseTimeLR(o, 0.05), lambda t, lr: S.inverse_time_lr(t, lr, 0.05)),
    "cosine": (lambda o: S.CosineAnnealingLR(o, 100, 1e-3), lambda t, lr: S.cosine_annealing_lr(t, lr, 100, 1e-3)),
    "linear": (lambda o: S.LinearLR(o, 0.05, 0.9, 40), lambda t, lr: S.linear_lr(t, lr, 0.05, 0.9, 40)),
    "warmup": (lambda o: S.LinearWarmup(o, 25), lambda t, lr: S.linear_warmup(t, lr, 25)),
}

# The schedules written out independently of pyopt.schedules: the spec the pure functions are held to.
SPEC = {
    "step": lambda t, lr: lr * 0.7 ** (t // 7),
    "multi_step": lambda t, lr: lr * 0.5 ** sum(m <= t for m in (3, 50, 51, 400)),
    "exponential": lambda t, lr: lr * 0.99 ** t,
    "inverse_time": lambda t, lr: lr / (1 + 0.05 * t),
    "cosine": lambda t, lr: 1e-3 + (lr - 1e-3) * (1 + math.cos(math.pi * t / 100)) / 2,
    "linear": lambda t, lr: lr * (0.05 + 0.85 * min(t, 40) / 40),
    "warmup": lambda t, lr: lr * min(t, 25) / 25,
}


def composites():
    """name -> (builder, closed form of (step, lr0)) for SequentialLR, ChainedScheduler and a nesting of both."""
    warm, cos = SIMPLE["warmup"][1], SIMPLE["cosine"][1]
    return {
        "sequential": (lambda o: S.SequentialLR(o, [S.LinearWarmup(o, 25), S.CosineAnnealingLR(o, 100, 1e-3)], [25]),
                       lambda t, lr: warm(t, lr) if t < 25 else cos(t - 25, lr)),
        "chained": (lambda o: S.ChainedScheduler([S.LinearWarmup(o, 25), S.ExponentialLR(o, 0.99)]),
                    lambda t, lr: S.exponential_lr(t, warm(t, lr), 0.99)),
        "nested": (lambda o: S.SequentialLR(o, [S.LinearWarmup(o, 10, 0.1), S.ChainedScheduler(
                       [S.StepLR(o, 30, 0.5), S.InverseTimeLR(o, 0.01)]), S.ExponentialLR(o, 0.98)], [10, 200]),
                   lambda t, lr: (S.linear_warmup(t, lr, 10, 0.1) if t < 10 else
                                  S.inverse_time_lr(t - 10, S.step_lr(t - 10, lr, 30, 0.5), 0.01) if t < 200 else
                                  S.exponential_lr(t - 200, lr, 0.98))),
    }


ALL = {**SIMPLE, **composites()}


# ---- invariant 12: stepping == closed form ----
@pytest.mark.parametrize("name", list(ALL))
def test_stepping_equals_closed_form(name):
    build, closed = ALL[name]
    opt = make_opt()
    sched = build(opt)
    for t in range(N_STEPS):
        expected = [closed(t, lr) for lr in LRS]
        assert sched.last_epoch == t
        assert lrs_of(opt) == sched.get_last_lr() == sched.lr_at(t) == expected, f"step {t}"
        sched.step()


@pytest.mark.parametrize("name", list(SPEC))
def test_pure_functions_follow_the_spec(name):
    steps = range(N_STEPS)
    for lr in LRS:
        assert_close([SIMPLE[name][1](t, lr) for t in steps], [SPEC[name](t, lr) for t in steps],
                     rtol=1e-14, atol=0, name=name)


def test_closed_form_landmarks():
    assert S.step_lr(29, 0.05, 30) == 0.05 and S.step_lr(30, 0.05, 30) == pytest.approx(0.005)
    assert S.multi_step_lr(79, 0.05, [30, 80]) == pytest.approx(0.005)
    assert S.multi_step_lr(80, 0.05, [30, 80]) == pytest.approx(0.0005)
    assert S.multi_step_lr(10, 0.05, []) == 0.05
    assert S.cosine_annealing_lr(50, 1.0, 100) == pytest.approx(0.5)
    assert S.cosine_annealing_lr(100, 1.0, 100, eta_min=0.1) == pytest.approx(0.1)
    assert S.cosine_annealing_lr(200, 1.0, 100) == 1.0  # torch's period 2 T_max
    assert S.inverse_time_lr(10, 1.0, 0.1) == 0.5
    assert [S.linear_warmup(t, 1.0, 10) for t in (0, 5, 10, 11)] == [0.0, 0.5, 1.0, 1.0]
    assert S.linear_warmup(0, 1.0, 0) == 1.0 and S.linear_lr(3, 2.0, 0.5, 0.25, 0) == 0.5
    assert S.exponential_lr(0, 0.1, 0.0) == 0.1 and S.exponential_lr(1, 0.1, 0.0) == 0.0


# ---- torch parity ----
def torch_pairs():
    """name -> (torch builder, pyopt builder, steps) for every schedule torch also has."""
    pairs = {
        "step": ("StepLR", (7, 0.7)), "multi_step": ("MultiStepLR", ([3, 50, 51, 400], 0.5)),
        "exponential": ("ExponentialLR", (0.99,)), "linear": ("LinearLR", (0.05, 0.9, 40)),
        "linear_default": ("LinearLR", ()),
        **{f"cosine_T{T}_eta{e}": ("CosineAnnealingLR", (T, e)) for T in (1, 7, 100, 250, 600) for e in (0.0, 1e-3)},
    }
    out = {name: (lambda o, c=cls, a=args: getattr(_torch_sched(), c)(o, *a),
                  lambda o, c=cls, a=args: getattr(S, c)(o, *a), N_STEPS) for name, (cls, args) in pairs.items()}

    def seq(m, two_milestones=False):
        if two_milestones:
            return lambda o: m.SequentialLR(o, [m.LinearLR(o, 0.1, 1.0, 10), m.ExponentialLR(o, 0.99),
                                                m.StepLR(o, 30, 0.5)], [10, 100])
        return lambda o: m.SequentialLR(o, [m.LinearLR(o, 0.1, 1.0, 10), m.CosineAnnealingLR(o, 200, 1e-4)], [10])

    def chain(m, multiplicative_only=False):
        if multiplicative_only:
            return lambda o: m.ChainedScheduler([m.StepLR(o, 10, 0.5), m.MultiStepLR(o, [5, 25], 0.3)])
        return lambda o: m.ChainedScheduler([m.LinearLR(o, 0.1, 1.0, 10), m.ExponentialLR(o, 0.995),
                                             m.CosineAnnealingLR(o, 600)])

    for name, make, arg, steps in (("sequential", seq, False, N_STEPS), ("sequential_3", seq, True, N_STEPS),
                                   # torch's chained cosine leaves the product past T_max (its recursion adds
                                   # base_lr terms there): compare up to T_max
                                   ("chained_cosine", chain, False, 601), ("chained_steps", chain, True, N_STEPS)):
        out[name] = ((lambda o, mk=make, a=arg: mk(_torch_sched(), a)(o)), make(S, arg), steps)
    return out


def _torch_sched():
    return pytest.importorskip("torch").optim.lr_scheduler


def torch_opt():
    torch = pytest.importorskip("torch")
    return torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lr} for lr in LRS])


TORCH = torch_pairs()


@pytest.mark.parametrize("name", list(TORCH))
def test_matches_torch(name):
    make_torch, make_pyopt, steps = TORCH[name]
    t_opt, p_opt = torch_opt(), torch_opt()  # pyopt's scheduler drives a torch optimizer too (duck typing)
    t_sched, p_sched = make_torch(t_opt), make_pyopt(p_opt)
    got, want = [], []
    for _ in range(steps):
        want.append(t_sched.get_last_lr())
        got.append(p_sched.get_last_lr())
        assert lrs_of(p_opt) == got[-1]
        t_opt.step()  # no grads: a no-op that keeps torch from warning about the call order
        t_sched.step()
        p_sched.step()
    assert_close(np.array(got), np.array(want), rtol=TORCH_RTOL, atol=TORCH_ATOL, name=name)


@pytest.mark.parametrize("cls, args", [("StepLR", (7, 0.7)), ("MultiStepLR", ([3, 50, 400], 0.5)),
                                       ("CosineAnnealingLR", (100, 1e-3)), ("LinearLR", (0.05, 0.9, 40))])
def test_loads_torch_state_dict(cls, args):
    t_opt = torch_opt()
    t_sched = getattr(_torch_sched(), cls)(t_opt, *args)
    for _ in range(57):
        t_opt.step()
        t_sched.step()
    p_opt = torch_opt()
    mine = getattr(S, cls)(p_opt, *args)
    mine.load_state_dict(t_sched.state_dict())
    assert mine.last_epoch == 57 and mine.get_last_lr() == t_sched.get_last_lr()
    for _ in range(100):
        t_opt.step()
        t_sched.step()
        mine.step()
        assert_close(mine.get_last_lr(), t_sched.get_last_lr(), rtol=TORCH_RTOL, atol=TORCH_ATOL, name=cls)


# ---- protocol ----
def test_constructor_protocol_like_torch():
    opt = make_opt()
    opt.param_groups[1]["initial_lr"] = 0.5  # an existing initial_lr is kept (torch's setdefault)
    sched = S.StepLR(opt, 2, 0.5)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.5] == sched.base_lrs
    assert sched.last_epoch == 0 and sched._step_count == 1 and lrs_of(opt) == [0.1, 0.5]
    resumed = S.StepLR(opt, 2, 0.5, last_epoch=4)  # lands on last_epoch + 1, as torch's initial step does
    assert resumed.last_epoch == 5 and lrs_of(opt) == [0.1 * 0.25, 0.5 * 0.25]
    last = sched.get_last_lr()
    last[0] = 99.0
    assert sched.get_last_lr()[0] == 0.1  # a copy


def test_closed_form_overrides_external_lr_changes_and_follows_base_lrs():
    opt = make_opt()
    sched = S.ExponentialLR(opt, 0.5)
    opt.param_groups[0]["lr"] = 7.0  # torch would scale this along; pyopt recomputes from base_lrs
    sched.step()
    assert lrs_of(opt) == [0.05, 0.015]
    sched.base_lrs = [1.0, 2.0]
    sched.step()
    assert lrs_of(opt) == [0.25, 0.5]
    sched.step(epoch=10)  # torch's deprecated form; exact here
    assert sched.last_epoch == 10 and lrs_of(opt) == [0.5 ** 10, 2 * 0.5 ** 10]


def test_sequential_children_follow():
    opt = make_opt()
    warm, cos, exp = S.LinearWarmup(opt, 5), S.CosineAnnealingLR(opt, 10), S.ExponentialLR(opt, 0.9)
    seq = S.SequentialLR(opt, [warm, cos, exp], [5, 15])
    for _ in range(20):
        seq.step()
    assert (seq.last_epoch, warm.last_epoch, cos.last_epoch, exp.last_epoch) == (20, 4, 9, 5)


def test_added_param_group_is_an_error_not_a_silent_mismatch():
    opt = make_opt()
    sched = S.StepLR(opt, 3)
    opt.param_groups.append({"lr": 1.0})
    with pytest.raises(ValueError, match="3 param groups but the scheduler has 2 base_lrs"):
        sched.step()


# ---- state_dict ----
@pytest.mark.parametrize("name", list(ALL))
def test_state_dict_round_trip(name):
    build = ALL[name][0]
    opt_a = make_opt()
    a = build(opt_a)
    for _ in range(37):
        a.step()
    saved = a.state_dict()
    snapshot = copy.deepcopy(saved)
    opt_b = make_opt([1.0, 2.0])  # different rates: the state dict brings base_lrs
    b = build(opt_b)
    b.load_state_dict(saved)
    assert saved == snapshot, "load_state_dict mutated its input"
    assert b.state_dict() == snapshot and b.get_last_lr() == a.get_last_lr()
    for _ in range(50):
        a.step()
        b.step()
        assert lrs_of(opt_b) == lrs_of(opt_a) == b.get_last_lr()


def test_state_dict_brings_hyper_parameters():
    a = S.MultiStepLR(make_opt(), [3, 9], 0.5)
    b = S.MultiStepLR(make_opt(), [100], 0.1)
    b.load_state_dict(a.state_dict())
    assert (b.milestones, b.gamma) == ((3, 9), 0.5)
    b.load_state_dict({"milestones": Counter([4, 8])})  # torch's form; absent keys keep their values
    assert b.milestones == (4, 8) and b.last_epoch == 0


@pytest.mark.parametrize("bad, match", [
    ({"gamma": -0.5}, r"Invalid gamma \(a finite number >= 0\): -0.5"),
    ({"base_lrs": [0.1]}, r"state_dict\['base_lrs'\] must be a list of 2"),
    ({"base_lrs": [0.1, float("nan")]}, r"state_dict\['base_lrs'\]\[1\]"),
    ({"last_epoch": -3}, r"state_dict\['last_epoch'\]"),
    ({"step_sise": 3}, "does not know: step_sise"),
])
def test_load_state_dict_checks_before_changing_anything(bad, match):
    sched = S.StepLR(make_opt(), 7, 0.7)
    before = sched.state_dict()
    with pytest.raises(ValueError, match=match):
        sched.load_state_dict({**before, **bad})
    assert sched.state_dict() == before


def test_composite_load_checks_children_first():
    opt = make_opt()
    seq = S.SequentialLR(opt, [S.LinearWarmup(opt, 5), S.StepLR(opt, 3)], [5])
    good = seq.state_dict()
    bad = copy.deepcopy(good)
    bad["last_epoch"] = 9
    bad["_schedulers"][1]["gamma"] = float("inf")
    with pytest.raises(ValueError, match="gamma"):
        seq.load_state_dict(bad)
    assert seq.state_dict() == good
    with pytest.raises(ValueError, match="2 state dicts"):
        seq.load_state_dict({"_schedulers": [good["_schedulers"][0]]})
    with pytest.raises(ValueError, match="one milestone fewer"):
        seq.load_state_dict({"_milestones": [5, 9]})


# ---- bad arguments ----
BAD = [
    (lambda o: S.StepLR(o, 0), ValueError, "step_size must be an integer >= 1"),
    (lambda o: S.StepLR(o, 2.5), ValueError, "step_size"),
    (lambda o: S.StepLR(o, 3, -0.1), ValueError, r"Invalid gamma \(a finite number >= 0\): -0.1"),
    (lambda o: S.StepLR(o, 3, float("nan")), ValueError, "gamma"),
    (lambda o: S.StepLR(o, 3, True), TypeError, "gamma must be a real number"),
    (lambda o: S.MultiStepLR(o, [5, 5]), ValueError, "milestones must be strictly increasing, got 5 then 5"),
    (lambda o: S.MultiStepLR(o, [9, 3]), ValueError, "strictly increasing"),
    (lambda o: S.MultiStepLR(o, [-1, 3]), ValueError, r"milestones\[0\]"),
    (lambda o: S.MultiStepLR(o, "30"), TypeError, "milestones must be a sequence"),
    (lambda o: S.ExponentialLR(o, -1.0), ValueError, "gamma"),
    (lambda o: S.ExponentialLR(o, float("inf")), ValueError, "gamma"),
    (lambda o: S.InverseTimeLR(o, -0.5), ValueError, "decay_rate"),
    (lambda o: S.InverseTimeLR(o, float("nan")), ValueError, "decay_rate"),
    (lambda o: S.CosineAnnealingLR(o, 0), ValueError, "T_max must be an integer >= 1, got 0"),
    (lambda o: S.CosineAnnealingLR(o, -5), ValueError, "T_max"),
    (lambda o: S.CosineAnnealingLR(o, 10, -1e-3), ValueError, "eta_min"),
    (lambda o: S.CosineAnnealingLR(o, 10, float("inf")), ValueError, "eta_min"),
    (lambda o: S.LinearLR(o, 1.5), ValueError, r"Invalid start_factor \(a finite number >= 0 and <= 1\): 1.5"),
    (lambda o: S.LinearLR(o, 0.5, -0.1), ValueError, "end_factor"),
    (lambda o: S.LinearLR(o, 0.5, 1.0, -1), ValueError, "total_iters"),
    (lambda o: S.LinearWarmup(o, -1), ValueError, "warmup_steps must be an integer >= 0, got -1"),
    (lambda o: S.LinearWarmup(o, 5, float("nan")), ValueError, "start_factor"),
    (lambda o: S.StepLR(o, 3, last_epoch=-2), ValueError, "last_epoch"),
    (lambda o: S.StepLR(o, 3, last_epoch=5), ValueError, r"param_groups\[0\] has no 'initial_lr'"),
    (lambda o: S.StepLR(SimpleNamespace(), 3), TypeError, "param_groups"),
    (lambda o: S.StepLR(SimpleNamespace(param_groups=[]), 3), TypeError, "non-empty"),
    (lambda o: S.StepLR(SimpleNamespace(param_groups=[{"lr": 0.1}, {"lr": -1.0}]), 3), ValueError,
     r"Invalid param_groups\[1\]\['lr'\] \(a finite number >= 0\): -1.0"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 3), S.StepLR(o, 3)], []), ValueError, "one milestone fewer"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 3), S.StepLR(o, 3)], [0]), ValueError, "milestones"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 3)] * 3, [5, 5]), ValueError, "strictly increasing"),
    (lambda o: S.SequentialLR(o, [], []), ValueError, "at least one scheduler"),
    (lambda o: S.SequentialLR(o, [S.StepLR(make_opt(), 3)], []), ValueError, "different optimizer"),
    (lambda o: S.SequentialLR(o, [object()], []), TypeError, r"schedulers\[0\]"),
    (lambda o: S.ChainedScheduler([S.StepLR(o, 3), S.StepLR(make_opt(), 3)]), ValueError, "different optimizer"),
    (lambda o: S.ChainedScheduler([]), ValueError, "ChainedScheduler expects at least one scheduler"),
    (lambda o: S.ChainedScheduler([S.StepLR(o, 3), S.StepLR(o, 3, last_epoch=4)]), ValueError, "different steps"),
]


@pytest.mark.parametrize("build, exc, match", BAD, ids=[b[2] for b in BAD])
def test_bad_arguments(build, exc, match):
    opt = make_opt()
    with pytest.raises(exc, match=match):
        build(opt)


def test_failed_constructor_leaves_the_optimizer_untouched():
    opt = make_opt()
    with pytest.raises(ValueError):
        S.CosineAnnealingLR(opt, 0)
    assert opt.param_groups == [{"lr": 0.1}, {"lr": 0.03}]


@pytest.mark.parametrize("call, match", [
    (lambda: S.step_lr(-1, 0.1, 3), "step must be an integer >= 0"),
    (lambda: S.step_lr(1.5, 0.1, 3), "step"),
    (lambda: S.step_lr(2 ** 63, 0.1, 3), "< 2\\*\\*63"),
    (lambda: S.exponential_lr(3, -0.1, 0.5), "lr0"),
    (lambda: S.cosine_annealing_lr(3, float("nan"), 10), "lr0"),
    (lambda: S.StepLR(make_opt(), 3).lr_at(-1), "step"),
    (lambda: S.StepLR(make_opt(), 3).step(epoch=-1), "epoch"),
])
def test_bad_steps(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- huge step counts ----
@pytest.mark.parametrize("step", [10 ** 12, 1e12, 2 ** 63 - 1])
@pytest.mark.parametrize("name", list(SIMPLE))
def test_finite_at_huge_steps(name, step):
    build, closed = SIMPLE[name]
    for lr in LRS:
        assert math.isfinite(closed(step, lr))
    opt = make_opt()
    sched = build(opt)
    sched.step(epoch=step - 1)
    sched.step()
    assert all(math.isfinite(v) and v >= 0 for v in lrs_of(opt))
    assert sched.lr_at(step) == [closed(step, lr) for lr in LRS]


def test_huge_step_values():
    t = 10 ** 12
    assert S.exponential_lr(t, 0.1, 0.9) == 0.0 and S.step_lr(t, 0.1, 1, 0.5) == 0.0
    assert S.multi_step_lr(t, 0.1, [1] + list(range(10, 100000, 10))) == 0.0
    assert S.inverse_time_lr(t, 0.1, 0.5) == pytest.approx(0.1 / (1 + 0.5e12), rel=1e-15)
    # cosine reduces t modulo 2 T_max exactly, so it stays periodic at any t
    assert S.cosine_annealing_lr(t + 37, 0.1, 100) == S.cosine_annealing_lr(37, 0.1, 100)
    assert S.cosine_annealing_lr(2 ** 63 - 1, 0.1, 7) == S.cosine_annealing_lr((2 ** 63 - 1) % 14, 0.1, 7)
    assert S.linear_warmup(t, 0.1, 1000) == 0.1
    resumed = make_opt()
    for g in resumed.param_groups:
        g["initial_lr"] = g["lr"]
    assert S.ExponentialLR(resumed, 0.5, last_epoch=t).get_last_lr() == [0.0, 0.0]


def test_growth_overflows_to_inf_never_nan_and_the_optimizer_refuses_it():
    # gamma > 1 is allowed (an LR range test); past the float range the value is inf, not OverflowError or NaN
    assert S.exponential_lr(10 ** 12, 0.1, 1.1) == math.inf
    assert S.exponential_lr(10 ** 12, 0.0, 1.1) == 0.0
    params = [np.ones(3)]
    opt = Adam(params, lr=0.1, backend="numpy")
    S.ExponentialLR(opt, 1.1, last_epoch=-1).step(epoch=10 ** 12)
    with pytest.raises(ValueError, match="learning rate"):
        opt.step([np.ones(3)])
    assert np.array_equal(params[0], np.ones(3))


# ---- the optimizer uses the scheduled lr ----
@pytest.mark.parametrize("backend", ["numpy", None])
def test_adam_steps_with_the_scheduled_lr(rng, backend):
    n = 101
    start = [rng.standard_normal(n), rng.standard_normal(n)]
    # |g| >= 1 >> eps, so Adam's first update is the lr to 1e-8
    grads = [[rng.choice([-1.0, 1.0], n) * (1 + np.abs(rng.standard_normal(n))) for _ in start] for _ in range(12)]

    def run(scheduled):
        params = [p.copy() for p in start]
        opt = Adam([{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}], backend=backend)
        sched = S.LinearWarmup(opt, 4, start_factor=0.25) if scheduled else None
        deltas = []
        for t, g in enumerate(grads):
            if not scheduled:  # the manual equivalent: set each group's lr from the closed form
                for group, lr in zip(opt.param_groups, LRS):
                    group["lr"] = S.linear_warmup(t, lr, 4, 0.25)
            before = [p.copy() for p in params]
            opt.step(g)
            deltas.append([p - b for p, b in zip(params, before)])
            if sched:
                sched.step()
        return params, deltas

    params, deltas = run(True)
    # Adam's first step moves each element by lr * |g| / (|g| + eps), i.e. by the scheduled lr: 0.25 * lr0
    for k, lr in enumerate(LRS):
        assert_close(np.abs(deltas[0][k]), np.full(n, 0.25 * lr), rtol=1e-6, atol=0, name=f"group {k} step 1")
    manual, _ = run(False)
    for p, q in zip(params, manual):
        assert np.array_equal(p, q)

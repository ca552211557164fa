r"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s protocol, over any object with ``param_groups``.

Every schedule is a closed form :math:`\eta_t = f(t, \eta_0)` of the step :math:`t` (``last_epoch``) and a
group's base rate :math:`\eta_0` (``base_lrs[i]``, the group's ``'initial_lr'``), available three ways:

- a pure function of the step: ``step_lr(step, lr0, step_size, gamma)``, ``cosine_annealing_lr(...)``...;
- ``scheduler.lr_at(step)``: every group's value at ``step`` (a list, like ``get_last_lr()``);
- ``scheduler.step()``: ``last_epoch += 1``, then ``group['lr'] = lr_at(last_epoch)[i]`` for every group.

The protocol is torch's: the constructor sets each group's ``'initial_lr'`` (if absent) from its ``'lr'``, takes
``base_lrs`` from them, and performs the initial step (``last_epoch`` goes from ``-1`` to ``0`` and ``group['lr']``
becomes :math:`f(0, \eta_0)`); ``last_epoch=k`` resumes (``'initial_lr'`` must then exist) and lands on ``k + 1``;
``get_last_lr()``, ``state_dict()`` and ``load_state_dict()`` behave as in torch (the state dicts use torch's keys,
and one saved by torch loads here). The optimizer is duck typed: pyopt optimizers, torch optimizers, anything
with a ``param_groups`` list of dicts holding ``'lr'``; its ``step`` method is not patched.

Convention (where pyopt differs from torch): **closed form, not torch's chainable form.** torch's ``get_lr()``
multiplies the *current* ``group['lr']`` by a ratio each step (CosineAnnealingLR by a ratio of cosines);
pyopt evaluates :math:`f(t, \eta_0)` from ``base_lrs`` every step. So stepping equals the closed form bitwise,
nothing drifts over long runs, a resumed run lands exactly where an uninterrupted one would, and steps of
:math:`10^{12}` cost nothing. The values agree with torch's to rounding (tested over 600 steps within rtol 1e-12,
atol 1e-13 :math:`\eta_0`; torch's recursive cosine drifts by about 2e-13). Two consequences: a change to
``group['lr']`` made outside the scheduler is overwritten at the next ``step()`` (change ``scheduler.base_lrs``
instead); and ChainedScheduler composes closed forms (each one's output is the next one's :math:`\eta_0`), which
is torch's product for multiplicative schedules (all here, cosine with ``eta_min=0`` up to ``T_max`` included),
not torch's recursion for a chained cosine with ``eta_min > 0`` or past ``T_max`` (where torch adds base terms).

Arguments are checked at construction (``ValueError``/``TypeError`` naming the argument, the value and the rule)
before anything is written; stricter than torch on milestones (strictly increasing) and a resume without
``'initial_lr'`` (ValueError, torch: KeyError). Factors never overflow into an error or NaN: :math:`\gamma^t` underflows to 0.0 for
:math:`\gamma < 1`, and a growth factor :math:`\gamma > 1` (an LR range test) gives ``inf`` past the float range,
which pyopt's optimizers refuse at their next step. Steps are integers in :math:`[0, 2^{63})`, like the
optimizers' step counters. References: PyTorch ``torch/optim/lr_scheduler.py``; Loshchilov & Hutter, SGDR
(arXiv:1608.03983).
"""
import math
import numbers
from bisect import bisect_right
from collections import Counter

from pyopt.optim.optimizer import check_hparam

__all__ = [
    "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "InverseTimeLR", "CosineAnnealingLR", "LinearLR",
    "LinearWarmup", "SequentialLR", "ChainedScheduler",
    "step_lr", "multi_step_lr", "exponential_lr", "inverse_time_lr", "cosine_annealing_lr", "linear_lr",
    "linear_warmup",
]

MAX_STEP = 2 ** 63 - 1


# ---- argument checks (name, value and rule in every message) ----
def _real(name, value, high=None):
    """A finite real >= 0 (<= high if given): pyopt's hyper-parameter check, with the rule in the message."""
    rule = "a finite number >= 0" + ("" if high is None else f" and <= {high:g}")
    return check_hparam(name, value, high=high, high_open=False, label=f"{name} ({rule})")


def _int(name, value, low=0):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not isinstance(value, numbers.Integral):  # integral floats (1e12) are accepted
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not low <= value <= MAX_STEP:
        rule = f">= {low}" if value < low else "< 2**63"
        raise ValueError(f"{name} must be an integer {rule}, got {value!r}")
    return int(value)


def _increasing(name, values, low):
    if isinstance(values, Counter):  # torch keeps MultiStepLR's milestones as a Counter
        values = sorted(values.elements())
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of integers, got {type(values).__name__}")
    values = [_int(f"{name}[{k}]", m, low) for k, m in enumerate(values)]
    for k in range(1, len(values)):
        if values[k] <= values[k - 1]:
            raise ValueError(f"{name} must be strictly increasing, got {values[k - 1]} then {values[k]} at index {k}")
    return tuple(values)


# ---- the closed forms, written once; the pure functions and the classes both call these ----
def _power(gamma, k):
    """gamma ** k for gamma >= 0 and an integer 0 <= k < 2**63, without OverflowError: 0.0 or inf beyond range."""
    try:
        return gamma ** k
    except OverflowError:
        return 0.0 if gamma < 1.0 else math.inf


def _scaled(lr0, factor):
    return 0.0 if lr0 == 0.0 else lr0 * factor  # 0 * inf would be NaN


def _step_rule(t, lr0, step_size, gamma):
    return _scaled(lr0, _power(gamma, t // step_size))


def _multi_step_rule(t, lr0, milestones, gamma):
    return _scaled(lr0, _power(gamma, bisect_right(milestones, t)))


def _exponential_rule(t, lr0, gamma):
    return _scaled(lr0, _power(gamma, t))


def _inverse_time_rule(t, lr0, decay_rate):
    return lr0 / (1.0 + decay_rate * t)


def _cosine_rule(t, lr0, T_max, eta_min):
    t = t % (2 * T_max)  # torch's closed form has period 2 T_max; reducing exactly keeps huge t accurate
    return eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * t / T_max)) / 2


def _linear_rule(t, lr0, start_factor, end_factor, total_iters):
    if total_iters == 0:
        return lr0 * end_factor
    return lr0 * (start_factor + (end_factor - start_factor) * min(total_iters, t) / total_iters)


def _check_step(step_size, gamma=0.1):
    return dict(step_size=_int("step_size", step_size, 1), gamma=_real("gamma", gamma))


def _check_multi_step(milestones, gamma=0.1):
    return dict(milestones=_increasing("milestones", milestones, 0), gamma=_real("gamma", gamma))


def _check_exponential(gamma):
    return dict(gamma=_real("gamma", gamma))


def _check_inverse_time(decay_rate):
    return dict(decay_rate=_real("decay_rate", decay_rate))


def _check_cosine(T_max, eta_min=0.0):
    return dict(T_max=_int("T_max", T_max, 1), eta_min=_real("eta_min", eta_min))


def _check_linear(start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
    return dict(start_factor=_real("start_factor", start_factor, high=1.0),
                end_factor=_real("end_factor", end_factor, high=1.0),
                total_iters=_int("total_iters", total_iters, 0))


# ---- pure functions of the step ----
def step_lr(step, lr0, step_size, gamma=0.1):
    r"""Step decay: :math:`\eta_t = \eta_0\,\gamma^{\lfloor t / s \rfloor}`.

    :math:`t` = ``step``, :math:`\eta_0` = ``lr0``, :math:`s` = ``step_size`` (>= 1), :math:`\gamma` = ``gamma``
    (>= 0). torch.optim.lr_scheduler.StepLR.
    """
    return _step_rule(_int("step", step), _real("lr0", lr0), **_check_step(step_size, gamma))


def multi_step_lr(step, lr0, milestones, gamma=0.1):
    r"""Decay at milestones: :math:`\eta_t = \eta_0\,\gamma^{|\{m_i \le t\}|}`.

    :math:`m_i` = ``milestones`` (strictly increasing integers >= 0), :math:`\gamma` = ``gamma`` (>= 0),
    :math:`t` = ``step``, :math:`\eta_0` = ``lr0``. torch.optim.lr_scheduler.MultiStepLR.
    """
    return _multi_step_rule(_int("step", step), _real("lr0", lr0), **_check_multi_step(milestones, gamma))


def exponential_lr(step, lr0, gamma):
    r"""Exponential decay: :math:`\eta_t = \eta_0\,\gamma^t`; 0.0 (never NaN) once :math:`\gamma^t` underflows.

    :math:`\gamma` = ``gamma`` (>= 0), :math:`t` = ``step``, :math:`\eta_0` = ``lr0``.
    torch.optim.lr_scheduler.ExponentialLR.
    """
    return _exponential_rule(_int("step", step), _real("lr0", lr0), **_check_exponential(gamma))


def inverse_time_lr(step, lr0, decay_rate):
    r"""Inverse-time decay: :math:`\eta_t = \eta_0 / (1 + k t)`.

    :math:`k` = ``decay_rate`` (>= 0), :math:`t` = ``step``, :math:`\eta_0` = ``lr0``. No torch class; TensorFlow's
    ``InverseTimeDecay`` with ``decay_steps=1``.
    """
    return _inverse_time_rule(_int("step", step), _real("lr0", lr0), **_check_inverse_time(decay_rate))


def cosine_annealing_lr(step, lr0, T_max, eta_min=0.0):
    r"""Cosine annealing: :math:`\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))`.

    :math:`T_{max}` = ``T_max`` (>= 1), :math:`\eta_{min}` = ``eta_min`` (>= 0), :math:`t` = ``step``,
    :math:`\eta_0` = ``lr0``. Past :math:`T_{max}` the value rises again (period :math:`2T_{max}`), as torch's does;
    stop stepping at :math:`T_{max}` to stay at :math:`\eta_{min}`. The closed form of
    torch.optim.lr_scheduler.CosineAnnealingLR (which steps by a recursion); SGDR without restarts.
    """
    return _cosine_rule(_int("step", step), _real("lr0", lr0), **_check_cosine(T_max, eta_min))


def linear_lr(step, lr0, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
    r"""Linear ramp of the factor: :math:`\eta_t = \eta_0\,(a + (b - a)\min(t, T)/T)`; :math:`\eta_0 b` when T = 0.

    :math:`a` = ``start_factor``, :math:`b` = ``end_factor`` (both in [0, 1]; torch requires a > 0, which only its
    recursion needs), :math:`T` = ``total_iters`` (>= 0), :math:`t` = ``step``, :math:`\eta_0` = ``lr0``.
    torch.optim.lr_scheduler.LinearLR.
    """
    return _linear_rule(_int("step", step), _real("lr0", lr0),
                        **_check_linear(start_factor, end_factor, total_iters))


def linear_warmup(step, lr0, warmup_steps, start_factor=0.0):
    r"""Linear warmup to :math:`\eta_0`: :math:`\eta_t = \eta_0\,(a + (1 - a)\min(t, W)/W)`; :math:`\eta_0` if W = 0.

    :math:`W` = ``warmup_steps`` (>= 0), :math:`a` = ``start_factor`` (in [0, 1]; the default 0 starts from zero
    as Hugging Face's ``get_linear_schedule_with_warmup`` does), :math:`t` = ``step``, :math:`\eta_0` = ``lr0``.
    ``linear_lr(step, lr0, start_factor, 1.0, warmup_steps)``.
    """
    warmup_steps = _int("warmup_steps", warmup_steps, 0)
    return linear_lr(step, lr0, start_factor, 1.0, warmup_steps)


# ---- schedulers ----
def _param_groups(optimizer):
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, (list, tuple)) or not groups or not all(isinstance(g, dict) for g in groups):
        raise TypeError("optimizer must have param_groups, a non-empty list of dicts, got "
                        f"{type(optimizer).__name__}")
    return groups


class LRScheduler:
    """Base of the schedulers: torch's protocol (see the module docstring) over a closed form ``_lr_at(t, lr0)``.

    A subclass names its hyper-parameters in ``_hparams`` (attributes of the same names, saved in the state dict),
    checks them in ``_check(**hparams) -> dict`` and evaluates ``_rule(t, lr0, **hparams)``.
    """

    _hparams = ()

    def __init__(self, optimizer, last_epoch=-1, **hparams):
        groups = _param_groups(optimizer)
        last_epoch = _int("last_epoch", last_epoch, -1)
        checked = self._check(**hparams)
        base_lrs = []
        for i, group in enumerate(groups):
            if last_epoch == -1:
                if "lr" not in group:
                    raise ValueError(f"param_groups[{i}] has no 'lr'")
                key = "initial_lr" if "initial_lr" in group else "lr"
                base_lrs.append(_real(f"param_groups[{i}][{key!r}]", group[key]))
            elif "initial_lr" not in group:
                raise ValueError(f"param_groups[{i}] has no 'initial_lr': resuming with last_epoch={last_epoch} "
                                 "needs the optimizer's state (load its state_dict first) or last_epoch=-1")
            else:
                base_lrs.append(_real(f"param_groups[{i}]['initial_lr']", group["initial_lr"]))
        # every check has passed: from here on the optimizer is written
        for group, base in zip(groups, base_lrs):
            group.setdefault("initial_lr", base)
        self.__dict__.update(checked)
        self.optimizer = optimizer
        self.base_lrs = base_lrs
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def _check(self, **hparams):
        return {}

    def _lr_at(self, t, lr0):
        return self._rule(t, lr0, **{name: getattr(self, name) for name in self._hparams})

    def lr_at(self, step):
        """The value of every group's learning rate at ``step`` (>= 0), without changing anything."""
        step = _int("step", step)
        return [self._lr_at(step, lr0) for lr0 in self.base_lrs]

    def get_last_lr(self):
        """The learning rates the last ``step()`` wrote, one per param group (a copy)."""
        return list(self._last_lr)

    def step(self, epoch=None):
        """Advance ``last_epoch`` by one (or set it to ``epoch``, exact here) and write every group's ``'lr'``."""
        self._write(self.last_epoch + 1 if epoch is None else _int("epoch", epoch))
        self._step_count += 1

    def _write(self, epoch):
        groups = _param_groups(self.optimizer)
        if len(groups) != len(self.base_lrs):
            raise ValueError(f"the optimizer has {len(groups)} param groups but the scheduler has "
                             f"{len(self.base_lrs)} base_lrs")
        values = self.lr_at(epoch)
        self._sync(epoch)
        for group, value in zip(groups, values):
            group["lr"] = value
        self._last_lr = [group["lr"] for group in groups]

    def _sync(self, epoch):
        """Set ``last_epoch`` (composites also set their children's)."""
        self.last_epoch = epoch

    # ---- state_dict ----
    def state_dict(self):
        """torch's layout: the hyper-parameters, ``base_lrs``, ``last_epoch``, ``_step_count``, ``_last_lr``."""
        state = {name: getattr(self, name) for name in self._hparams}
        state.update((k, list(v)) for k, v in state.items() if isinstance(v, tuple))
        state.update(base_lrs=list(self.base_lrs), last_epoch=self.last_epoch, _step_count=self._step_count,
                     _last_lr=list(self._last_lr))
        return state

    def load_state_dict(self, state_dict):
        """Load a state dict (checked whole before anything changes; not mutated; absent keys keep their value).

        Like torch, this does not touch the optimizer: its ``param_groups`` come from its own state dict.
        """
        for scheduler, updates in self._prepare_load(state_dict):
            scheduler.__dict__.update(updates)

    def _prepare_load(self, state):
        if not isinstance(state, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state).__name__}")
        # unknown private keys are torch's bookkeeping (_is_initial...): ignored; unknown public ones are errors
        known = set(self._hparams) | {"base_lrs", "last_epoch"}
        unknown = sorted(str(k) for k in state if k not in known and not str(k).startswith("_"))
        if unknown:
            raise ValueError(f"state_dict has keys {type(self).__name__} does not know: {', '.join(unknown)}")
        updates = self._check(**{name: state.get(name, getattr(self, name)) for name in self._hparams})
        n = len(self.base_lrs)
        for key in ("base_lrs", "_last_lr"):
            if key in state:
                values = state[key]
                if not isinstance(values, (list, tuple)) or len(values) != n:
                    raise ValueError(f"state_dict[{key!r}] must be a list of {n} values (one per param group), "
                                     f"got {values!r}")
                if key == "base_lrs":
                    updates[key] = [_real(f"state_dict['base_lrs'][{i}]", v) for i, v in enumerate(values)]
                else:
                    updates[key] = [float(v) for v in values]
        if "last_epoch" in state:
            updates["last_epoch"] = _int("state_dict['last_epoch']", state["last_epoch"], -1)
        if "_step_count" in state:
            updates["_step_count"] = _int("state_dict['_step_count']", state["_step_count"], 0)
        return [(self, updates)]


class StepLR(LRScheduler):
    r"""Step decay, :math:`\eta_t = \eta_0\,\gamma^{\lfloor t/s \rfloor}` (:func:`step_lr`); torch's StepLR."""
    _hparams = ("step_size", "gamma")
    _check = staticmethod(_check_step)
    _rule = staticmethod(_step_rule)

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        super().__init__(optimizer, last_epoch, step_size=step_size, gamma=gamma)


class MultiStepLR(LRScheduler):
    r"""Decay at milestones, :math:`\eta_t = \eta_0\,\gamma^{|\{m_i \le t\}|}` (:func:`multi_step_lr`); torch's."""
    _hparams = ("milestones", "gamma")
    _check = staticmethod(_check_multi_step)
    _rule = staticmethod(_multi_step_rule)

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        super().__init__(optimizer, last_epoch, milestones=milestones, gamma=gamma)


class ExponentialLR(LRScheduler):
    r"""Exponential decay, :math:`\eta_t = \eta_0\,\gamma^t` (:func:`exponential_lr`); torch's ExponentialLR."""
    _hparams = ("gamma",)
    _check = staticmethod(_check_exponential)
    _rule = staticmethod(_exponential_rule)

    def __init__(self, optimizer, gamma, last_epoch=-1):
        super().__init__(optimizer, last_epoch, gamma=gamma)


class InverseTimeLR(LRScheduler):
    r"""Inverse-time decay, :math:`\eta_t = \eta_0 / (1 + k t)`, k = ``decay_rate`` (:func:`inverse_time_lr`)."""
    _hparams = ("decay_rate",)
    _check = staticmethod(_check_inverse_time)
    _rule = staticmethod(_inverse_time_rule)

    def __init__(self, optimizer, decay_rate, last_epoch=-1):
        super().__init__(optimizer, last_epoch, decay_rate=decay_rate)


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing stepped by its closed form (:func:`cosine_annealing_lr`); torch's steps a recursion."""
    _hparams = ("T_max", "eta_min")
    _check = staticmethod(_check_cosine)
    _rule = staticmethod(_cosine_rule)

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        super().__init__(optimizer, last_epoch, T_max=T_max, eta_min=eta_min)


class LinearLR(LRScheduler):
    r"""Linear factor ramp, :math:`\eta_t = \eta_0 (a + (b - a)\min(t, T)/T)` (:func:`linear_lr`); torch's."""
    _hparams = ("start_factor", "end_factor", "total_iters")
    _check = staticmethod(_check_linear)
    _rule = staticmethod(_linear_rule)

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        super().__init__(optimizer, last_epoch, start_factor=start_factor, end_factor=end_factor,
                         total_iters=total_iters)


class LinearWarmup(LinearLR):
    r"""Warmup to :math:`\eta_0` over ``warmup_steps`` (:func:`linear_warmup`); a LinearLR with its state keys."""

    def __init__(self, optimizer, warmup_steps, start_factor=0.0, last_epoch=-1):
        warmup_steps = _int("warmup_steps", warmup_steps, 0)
        super().__init__(optimizer, start_factor, 1.0, warmup_steps, last_epoch)


def _check_children(schedulers, optimizer, owner):
    if isinstance(schedulers, LRScheduler) or not isinstance(schedulers, (list, tuple)):
        raise TypeError(f"{owner}: schedulers must be a list of schedulers, got {type(schedulers).__name__}")
    if not schedulers:
        raise ValueError(f"{owner} expects at least one scheduler, got none")
    for k, s in enumerate(schedulers):
        if not isinstance(s, LRScheduler):
            raise TypeError(f"{owner}: schedulers[{k}] must be a pyopt scheduler, got {type(s).__name__}")
        if s.optimizer is not optimizer:
            raise ValueError(f"{owner}: schedulers[{k}] drives a different optimizer; all must share one")
    return list(schedulers)


class SequentialLR(LRScheduler):
    r"""Runs ``schedulers[i]`` from ``milestones[i-1]`` on, each restarted at its own step 0 (torch's SequentialLR).

    .. math:: \eta_t = f_i(t - m_{i-1}, \eta_0), \quad i = |\{m_j \le t\}|, \; m_0 := 0

    :math:`f_i` = ``schedulers[i]``'s closed form, :math:`m_j` = ``milestones`` (strictly increasing, >= 1, one
    fewer than the schedulers). Example: ``SequentialLR(opt, [LinearWarmup(opt, 100), CosineAnnealingLR(opt,
    900)], milestones=[100])``. The children's ``last_epoch`` follow (the active one's is its local step).
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        self._schedulers = _check_children(schedulers, optimizer, "SequentialLR")
        self._milestones = self._check_milestones("milestones", milestones)
        super().__init__(optimizer, last_epoch)

    def _check_milestones(self, name, milestones):
        milestones = _increasing(name, milestones, 1)
        if len(milestones) != len(self._schedulers) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedulers: {len(self._schedulers)} "
                             f"schedulers but {len(milestones)} milestones in {name}")
        return milestones

    def _lr_at(self, t, lr0):
        i = bisect_right(self._milestones, t)
        return self._schedulers[i]._lr_at(t - (self._milestones[i - 1] if i else 0), lr0)

    def _sync(self, epoch):
        self.last_epoch = epoch
        bounds = (0,) + self._milestones
        for i, child in enumerate(self._schedulers):
            start, end = bounds[i], (bounds[i + 1] if i + 1 < len(bounds) else None)
            if epoch < start:
                child._sync(-1)                 # not started
            elif end is not None and epoch >= end:
                child._sync(end - start - 1)    # finished: its last local step
            else:
                child._sync(epoch - start)

    def state_dict(self):
        """The base layout plus ``_milestones`` and ``_schedulers`` (the children's state dicts), as torch's."""
        state = super().state_dict()
        state.update(_milestones=list(self._milestones), _schedulers=[s.state_dict() for s in self._schedulers])
        return state

    def _prepare_load(self, state):
        plan = super()._prepare_load(state)
        if "_milestones" in state:
            plan[0][1]["_milestones"] = self._check_milestones("state_dict['_milestones']", state["_milestones"])
        return plan + _prepare_children(self._schedulers, state)


def _prepare_children(children, state):
    if "_schedulers" not in state:
        return []
    saved = state["_schedulers"]
    if not isinstance(saved, (list, tuple)) or len(saved) != len(children):
        raise ValueError(f"state_dict['_schedulers'] must hold {len(children)} state dicts, got {saved!r}")
    return [entry for child, sub in zip(children, saved) for entry in child._prepare_load(sub)]


class ChainedScheduler(LRScheduler):
    r"""Applies every scheduler at each step, each to the previous one's output (torch's ChainedScheduler).

    .. math:: \eta_t = f_n(t, \ldots f_2(t, f_1(t, \eta_0)))

    :math:`f_i` = ``schedulers[i]``'s closed form. For multiplicative schedules (all of pyopt's, cosine with
    ``eta_min=0`` included) this is torch's :math:`\eta_0 \prod_i f_i(t, 1)`. The schedulers must share one
    optimizer and one ``last_epoch``; construction writes the chained value at that step without stepping.
    """

    def __init__(self, schedulers, optimizer=None):
        if isinstance(schedulers, (list, tuple)) and schedulers and optimizer is None:
            optimizer = getattr(schedulers[0], "optimizer", None)
        self._schedulers = _check_children(schedulers, optimizer, "ChainedScheduler")
        groups = _param_groups(optimizer)
        epochs = {s.last_epoch for s in self._schedulers}
        if len(epochs) != 1:
            raise ValueError(f"ChainedScheduler: the schedulers are at different steps {sorted(epochs)}; "
                             "chain schedulers built together")
        self.optimizer = optimizer
        self.base_lrs = [_real(f"param_groups[{i}]['initial_lr']", g["initial_lr"]) for i, g in enumerate(groups)]
        self._step_count = 1
        self._write(epochs.pop())

    def _lr_at(self, t, lr0):
        for child in self._schedulers:
            lr0 = child._lr_at(t, lr0)
        return lr0

    def _sync(self, epoch):
        self.last_epoch = epoch
        for child in self._schedulers:
            child._sync(epoch)

    def state_dict(self):
        """The base layout plus ``_schedulers`` (the children's state dicts), as torch's."""
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def _prepare_load(self, state):
        return super()._prepare_load(state) + _prepare_children(self._schedulers, state)

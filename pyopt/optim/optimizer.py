"""The optimizer base: param groups, state, state_dict, and the one-kernel-call-per-group step.

An optimizer family is an :class:`OpSpec` (its op name in the backend registry, its state buffers, its
reference) plus a subclass that validates hyper-parameters and says which buffers a group needs.

Per step the work in Python is small and constant per group: when the grads are the same array objects as in
the previous step (a training loop that reuses its gradient buffers) the cached plan (tensor lists and pointer
tables) is reused as is; otherwise it is rebuilt, with every check, before any kernel runs.
"""
import math
import operator
from dataclasses import dataclass

import numpy as np

from pyopt import backends
from pyopt import arrays as _arrays
from pyopt.track import _active as _tracking  # the list of active trackers: empty = off
from pyopt.arrays import TensorList, check_float_array, check_like, overlapping_pair
from pyopt.check import verify_enabled


@dataclass(frozen=True)
class OpSpec:
    """What the framework needs to know of one optimizer family."""

    op: str              # backend registry name
    state_roles: tuple   # every state buffer the family can have, in kernel-argument order
    reference: object    # the single-tensor NumPy reference (pyopt.reference)
    bytes_moved: object  # (numel, itemsize, **hparams) -> bytes
    has_step: bool = True


def require(condition, message):
    if not condition:
        raise ValueError(message)


def check_hparam(name, value, *, low=0.0, high=None, low_open=False, high_open=True, label=None):
    """A finite real in [low, high) (bounds configurable); PyTorch's message form ``Invalid <label>: <value>``."""
    label = label or name.replace("_", " ")
    value = _arrays.real_number(value, name)
    ok = math.isfinite(value) and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    require(ok, f"Invalid {label}: {value}")
    return value


def per_step_scalars(fn, steps, out):
    """Fills ``out`` (a tuple of float64 arrays, one per value ``fn`` returns) with ``fn(step)`` for each entry of
    ``steps``, computed once per distinct step in Python float64 arithmetic (exactly the numbers torch computes)."""
    if steps.size == 0:
        return
    first = int(steps[0])
    if steps.size == 1 or steps.strides == (0,) or (steps == first).all():
        for arr, v in zip(out, fn(first)):
            arr.fill(v)
        return
    values = {int(s): fn(int(s)) for s in np.unique(steps)}
    for k, arr in enumerate(out):
        arr[...] = [values[int(s)][k] for s in steps]


def as_array_list(arrays, name):
    """A list of arrays from one array or a sequence of them (None entries kept)."""
    if isinstance(arrays, np.ndarray) or _arrays.is_device_array(arrays):
        return [arrays]
    if not isinstance(arrays, (list, tuple)):
        raise TypeError(f"{name} must be an array or a list of arrays, got {type(arrays).__name__}")
    return list(arrays)


def prepare_tensor_lists(roles, labels):
    """Checks one call's arrays and splits them by device and dtype into TensorLists.

    ``roles`` maps a role (``param``, ``grad``, state names) to aligned lists (None allowed for absent state);
    ``labels`` maps a role to the name used in errors (``grads``, ``params``...).  Nothing is written.
    """
    params = roles["param"]
    for role, arrays in roles.items():
        require(len(arrays) == len(params),
                f"{labels[role]} has {len(arrays)} entries but params has {len(params)}")
    for k, p in enumerate(params):
        check_float_array(p, f"{labels['param']}[{k}]", writable=True)
        for role, arrays in roles.items():
            if role == "param" or arrays[k] is None:
                continue
            name = f"{labels[role]}[{k}]"
            check_like(arrays[k], p, name, f"{labels['param']}[{k}]")
            check_float_array(arrays[k], name, writable=role != "grad")
    flat = [(role, k, a) for role, arrays in roles.items() for k, a in enumerate(arrays)]
    pair = overlapping_pair([a for _, _, a in flat])
    if pair is not None:
        (r0, k0, _), (r1, k1, _) = flat[pair[0]], flat[pair[1]]
        raise ValueError(f"{labels[r0]}[{k0}] and {labels[r1]}[{k1}] overlap in memory; a fused in-place update "
                         "needs separate arrays")
    by_kind = {}
    for k, p in enumerate(params):
        key = p.dtype if isinstance(p, np.ndarray) else (_arrays.device_name(p), _arrays.dtype_of(p))
        by_kind.setdefault(key, []).append(k)
    return [(np.array(ks, dtype=np.int64),
             TensorList({role: [arrays[k] for k in ks] for role, arrays in roles.items()}))
            for ks in by_kind.values()]


def _as_slice(indices):
    """A slice for a run of consecutive indices (the usual case: steps[a:b] += 1 is a view, not a gather)."""
    if indices.size and indices[-1] - indices[0] == indices.size - 1:
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


class _UniformSteps:
    """The step counter of a plan part whose params all stand at the same step.  They advance together for as
    long as the plan is used, so one Python int serves them all, and the kernels get a stride-0 view of it: no
    NumPy operation per step (each costs 3-4 us here, a tenth of a small Adam step).  ``dirty``: the count is
    ahead of Optimizer._steps, which _sync_steps brings up to date before anything reads it."""

    def __init__(self, step, n):
        self.step = step
        self.dirty = False
        self.buffer = np.array([step], dtype=np.int64)
        self.view = np.lib.stride_tricks.as_strided(self.buffer, shape=(n,), strides=(0,), writeable=False)

    def advance(self):
        self.step += 1
        self.buffer[0] = self.step
        self.dirty = True


class _GroupPlan:
    """What one group's step needs, kept between steps: the active params, per-dtype tensor lists, kernels."""

    def __init__(self, grads, roles, parts, uniform):
        self.grads = grads      # the grad objects this plan was checked against
        self.roles = roles      # the state roles it carries
        self.parts = parts      # [(global indices, TensorList, backend name, kernel)]
        self.uniform = uniform  # per part: _UniformSteps, or None when its params stand at different steps

    def matches(self, grads, roles):
        return (roles == self.roles and len(grads) == len(self.grads)
                and all(map(operator.is_, grads, self.grads)))


class Optimizer:
    """Base of pyopt's optimizers: PyTorch's param-group and state_dict model over NumPy arrays.

    ``params``: a list of arrays, or a list of dicts each with a ``params`` list and per-group hyper-parameters.
    ``step(grads)`` takes one list aligned with all params in group order; a ``None`` grad skips its param.
    State is kept per param index in ``self.state`` (``exp_avg``...); the step counters in ``state_dict()``.
    """

    spec: OpSpec

    def __init__(self, params, defaults, *, backend=None, verify=False):
        if (isinstance(params, (np.ndarray, dict)) or not hasattr(params, "__iter__")
                or _arrays.is_device_array(params)):
            raise TypeError("params must be a list of arrays or of param-group dicts, got "
                            f"{type(params).__name__}")
        params = list(params)
        require(len(params) > 0, "optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.backend = backend
        self.verify = verify_enabled(verify)  # shadow every kernel call with the reference (or PYOPT_VERIFY=1)
        if backend is not None:
            backends.select(self.spec.op, backend, on_device=None)  # raises now if it cannot run
        self.param_groups = []
        for group in groups:
            self.add_param_group(group)
        self.state = {}
        self._steps = np.zeros(self._n_params(), dtype=np.int64)
        self._plans = {}
        self._hparams_cache = {}

    # ---- groups and hyper-parameters ----
    def add_param_group(self, group):
        if not isinstance(group, dict):
            raise TypeError(f"a param group must be a dict, got {type(group).__name__}")
        group = dict(group)
        plist = group.get("params")
        if isinstance(plist, np.ndarray) or _arrays.is_device_array(plist):
            plist = [plist]
        if not isinstance(plist, (list, tuple)):
            raise TypeError("a param group's 'params' must be a list of arrays")
        group["params"] = list(plist)
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        for key, value in group.items():
            if isinstance(value, list) and key != "params":
                group[key] = tuple(value)  # hyper-parameters are compared by value between steps
        offset = self._n_params()
        for k, p in enumerate(group["params"]):
            check_float_array(p, f"params[{offset + k}]", writable=True)
        everything = [p for g in self.param_groups for p in g["params"]] + group["params"]
        pair = overlapping_pair(everything)
        if pair is not None:
            raise ValueError(f"params[{pair[0]}] and params[{pair[1]}] are the same array or overlap in memory; "
                             "each parameter may appear once")
        self.check_hparams(group)
        self.param_groups.append(group)
        if hasattr(self, "_steps"):
            self._sync_steps()
            self._steps = np.concatenate([self._steps, np.zeros(len(group["params"]), dtype=np.int64)])
            self._plans.clear()

    def check_hparams(self, group):
        """Raise ValueError/TypeError for invalid hyper-parameters of ``group`` (subclasses)."""
        raise NotImplementedError

    def group_hparams(self, group):
        """The reference's keyword arguments for ``group`` (subclasses)."""
        raise NotImplementedError

    def state_roles(self, hparams):
        """The state buffers a group with these hyper-parameters uses (subclasses may narrow spec.state_roles)."""
        return self.spec.state_roles

    def init_state(self, role, param, group):
        """A new state buffer for ``param`` of ``group`` (the param-group dict), on the param's device."""
        return np.zeros_like(param) if isinstance(param, np.ndarray) else _arrays.zeros_like(param)

    def per_tensor(self, indices, hparams, steps):
        """Per-tensor kernel arguments for the params at ``indices``; ``steps``: their step counts after this
        step (an array, or a read-only stride-0 view when they are all the same)."""
        return {"step": steps}

    def _sync_steps(self):
        """Writes the counts the plans kept as Python ints back into _steps (before _steps is read or replaced)."""
        for plan in self._plans.values():
            for (indices, *_), uniform in zip(plan.parts, plan.uniform):
                if uniform is not None and uniform.dirty:
                    self._steps[indices] = uniform.step
                    uniform.dirty = False

    def _n_params(self):
        return sum(len(g["params"]) for g in self.param_groups)

    # ---- the step ----
    def step(self, grads):
        """One update of every param whose grad is not None; one kernel call per group and dtype."""
        if not isinstance(grads, (list, tuple)):
            raise TypeError("grads must be a list aligned with all params (None skips a param), got "
                            f"{type(grads).__name__}")
        require(len(grads) == len(self._steps),
                f"grads has {len(grads)} entries but the optimizer has {len(self._steps)} params")
        work, offset = [], 0
        for gi, group in enumerate(self.param_groups):
            count = len(group["params"])
            gslice = grads[offset:offset + count]
            hparams, roles = self._hparams(gi, group)
            plan = self._plans.get(gi)
            if plan is None or not plan.matches(gslice, roles):
                plan = self._plan(gi, group, offset, gslice, roles, hparams)
            work.append((plan, hparams))
            offset += count
        # every check has passed: from here on arrays are written
        for plan, hparams in work:
            self._commit_state(plan)
            for (indices, tensors, backend, kernel), uniform in zip(plan.parts, plan.uniform):
                if uniform is not None:
                    uniform.advance()
                    steps = uniform.view
                else:
                    if self.spec.has_step:
                        self._steps[indices] += 1
                    steps = self._steps[indices]
                per_tensor = self.per_tensor(indices, hparams, steps)
                if self.verify or _tracking:
                    backends.instrumented_call(self.spec, backend, kernel, tensors, hparams, per_tensor, self.verify)
                else:
                    kernel(tensors, hparams, per_tensor)
                self.after_step(indices, hparams)

    def _hparams(self, gi, group):
        """(hparams, state roles) of a group, re-validated only when its hyper-parameters changed (a schedule
        writing ``lr`` costs one check, an unchanged group none).  The same dict object is returned while the
        values stay the same, so kernels may cache what they derive from it."""
        key = tuple(map(group.get, self.defaults))
        cached = self._hparams_cache.get(gi)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        self.check_hparams(group)
        hparams = self.group_hparams(group)
        roles = self.state_roles(hparams)
        self._hparams_cache[gi] = (key, hparams, roles)
        return hparams, roles

    def after_step(self, indices, hparams):
        """Hook run after the kernel of the params at ``indices`` (SGD marks its momentum buffers as filled)."""

    def _plan(self, gi, group, offset, gslice, roles, hparams):
        self._sync_steps()  # the plan this one replaces may hold counts _steps has not seen
        active = [k for k, g in enumerate(gslice) if g is not None]
        params = [group["params"][k] for k in active]
        state_lists = {}
        pending = {}
        for role in roles:
            column = []
            for k in active:
                buf = self.state.get(offset + k, {}).get(role)
                if buf is None:
                    buf = self.init_state(role, group["params"][k], group)
                    pending[(offset + k, role)] = buf
                column.append(buf)
            state_lists[role] = column
        tensor_roles = {"param": params, "grad": [gslice[k] for k in active], **state_lists}
        labels = {"param": "params", "grad": "grads", **{r: f"state[{r!r}]" for r in roles}}
        try:
            parts = prepare_tensor_lists(tensor_roles, labels)
        except (TypeError, ValueError) as exc:
            # name the global param index, not the position among the active ones
            raise type(exc)(f"{exc} (param group {gi}; positions count the params that have a grad)") from None
        active_global = np.array([offset + k for k in active], dtype=np.int64)
        plan_parts = []
        for local, tensors in parts:
            name, kernel = backends.select(self.spec.op, self.backend, on_device=tensors.on_device)
            plan_parts.append((_as_slice(active_global[local]), tensors, name, kernel))
        uniform = []
        for indices, tensors, _, _ in plan_parts:
            steps = self._steps[indices]
            same = self.spec.has_step and steps.size > 0 and bool((steps == steps[0]).all())
            uniform.append(_UniformSteps(int(steps[0]), steps.size) if same else None)
        plan = _GroupPlan(list(gslice), roles, plan_parts, uniform)
        plan.pending = pending
        self._plans[gi] = plan
        return plan

    def _commit_state(self, plan):
        for (index, role), buf in getattr(plan, "pending", {}).items():
            self.state.setdefault(index, {})[role] = buf
        plan.pending = {}

    # ---- state_dict ----
    def state_dict(self):
        """PyTorch's layout: {'state': {index: {'step', buffers...}}, 'param_groups': [{..., 'params': [index]}]}.

        Buffers are the live arrays (as in torch); copy them to keep a snapshot.
        """
        self._sync_steps()
        state = {}
        for index, buffers in sorted(self.state.items()):
            entry = {}
            if self.spec.has_step:
                entry["step"] = float(self._steps[index])
            entry.update(buffers)
            state[index] = entry
        groups, offset = [], 0
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = list(range(offset, offset + len(group["params"])))
            offset += len(group["params"])
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a state_dict (copies of its arrays); checks everything before changing anything."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        require(len(saved_groups) == len(self.param_groups),
                f"loaded state dict has {len(saved_groups)} parameter groups but the optimizer has "
                f"{len(self.param_groups)}")
        index_map = {}
        offset = 0
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            require(len(saved["params"]) == len(group["params"]),
                    f"loaded param group {gi} has {len(saved['params'])} params but the optimizer's has "
                    f"{len(group['params'])}")
            for k, saved_index in enumerate(saved["params"]):
                index_map[saved_index] = offset + k
            offset += len(group["params"])
        params = [p for g in self.param_groups for p in g["params"]]
        new_state, new_steps = {}, np.zeros_like(self._steps)
        for saved_index, entry in state_dict["state"].items():
            require(saved_index in index_map, f"state for unknown param index {saved_index!r}")
            index = index_map[saved_index]
            param = params[index]
            buffers = {}
            for role, value in entry.items():
                if role == "step":
                    step = float(value)
                    require(step >= 0 and step == int(step), f"state[{saved_index}]['step'] is not a count: {value}")
                    new_steps[index] = int(step)
                    continue
                require(role in self.spec.state_roles, f"state[{saved_index}] has unknown buffer {role!r}")
                shape = _arrays.shape_of(value) if _arrays.is_device_array(value) else np.shape(value)
                param_shape = _arrays.shape_of(param)
                require(tuple(shape) == tuple(param_shape),
                        f"state[{saved_index}][{role!r}] has shape {tuple(shape)} but the param has "
                        f"{tuple(param_shape)}")
                buffers[role] = _arrays.copy_like(value, param)
            new_state[index] = buffers
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            merged = dict(group)
            merged.update({k: v for k, v in saved.items() if k != "params"})
            self.check_hparams(merged)
            new_groups.append(merged)
        for group, merged in zip(self.param_groups, new_groups):
            group.update(merged)
        self.state = new_state
        self._steps = new_steps
        self._plans.clear()
        self._hparams_cache.clear()
        self.after_load()

    def after_load(self):
        """Hook run after load_state_dict (SGD re-derives which momentum buffers are filled)."""


def reference_kernel(spec):
    """The ``numpy`` backend of an optimizer family: its reference applied tensor by tensor."""
    roles = ("param", "grad") + spec.state_roles

    def kernel(tensors, hparams, per_tensor):
        for t in range(tensors.n):
            arrays = [tensors.roles[r][t] if r in tensors.roles else None for r in roles]
            spec.reference(*arrays, **hparams, **{k: v[t].item() for k, v in per_tensor.items()})

    return kernel

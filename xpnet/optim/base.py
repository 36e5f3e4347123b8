"""The Optimizer loop: clipping, weight decay, lazy per-parameter state; subclasses write one rule."""

import math

import numpy as np

from xpnet import backends
from xpnet.checks import in_range
from xpnet.errors import ShapeError
from xpnet.optim import flat


def _check(name, value, low=0.0, high=None, low_open=False):
    """Raise ValueError naming the hyperparameter unless it is finite and low <(=) value (< high)."""
    if not in_range(value, low, math.inf if high is None else high, low_open, high_open=True):
        bound = f"{'>' if low_open else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def check_common(lr=0.01, weight_decay=0.0, clip_norm=None):
    """``(lr, weight_decay, clip_norm)`` as floats; ValueError naming the first out of range."""
    lr = _check("lr", lr, low_open=True)
    weight_decay = _check("weight_decay", weight_decay)
    return lr, weight_decay, None if clip_norm is None else _check("clip_norm", clip_norm, low_open=True)


def global_norm(grads):
    """sqrt of the sum of squares of every gradient, as a device scalar (no host sync)."""
    total = None
    for g in grads.values():
        s = (g * g).sum()
        total = s if total is None else total + s
    return backends.of(total).xp.sqrt(total)


class Optimizer:
    """Base optimizer: ``step(params, grads)`` updates every parameter in place.

    Args:
        lr: base learning rate (> 0).
        weight_decay: L2 coefficient added to each gradient (AdamW decouples it instead).
        clip_norm: if set, gradients are scaled so their global L2 norm is at most this.
        schedule: callable ``step -> factor`` multiplying ``lr`` (see :mod:`xpnet.optim.schedules`).
    """

    decoupled_weight_decay = False
    #: The backend's fused kernel for this rule (``Backend.fused_update``); None: per-parameter only.
    fused = None

    def __init__(self, lr=0.01, weight_decay=0.0, clip_norm=None, schedule=None):
        self.lr, self.weight_decay, self.clip_norm = check_common(lr, weight_decay, clip_norm)
        self.schedule = schedule
        self.t = 0
        self.state = {}
        self._flat = flat.FlatState()

    def hyperparams(self):
        """The constructor's keyword arguments (for state_dict and repr)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparams().items())
        return f"{type(self).__name__}({args})"

    def current_lr(self):
        """The learning rate the next step will use."""
        return self.lr * (float(self.schedule(self.t)) if self.schedule is not None else 1.0)

    def init_state(self, p):
        """Fresh per-parameter state (arrays on p's device)."""
        return {}

    def update(self, p, g, state, lr):
        """Update ``p`` in place from gradient ``g``; never modify ``g``."""
        raise NotImplementedError

    def fused_args(self):
        """The rule's own hyperparameters after ``(weight decay, clip norm)`` in its fused kernel; the
        learning rate and the step number go to :meth:`Backend.fused_update` on their own."""
        return ()

    def step(self, params, grads):
        """One update of every parameter; returns the global gradient norm if clipping, else None.

        Parameters and gradients given as flat buffers' views (:class:`~xpnet.models.flat.FlatArrays`,
        as a model with nothing frozen hands them) are updated a whole buffer at a time (see
        :mod:`xpnet.optim.flat`); any other dicts one parameter at a time. Both do the same arithmetic.
        """
        lr = self.current_lr()
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"{type(self).__name__}.step: no gradient for {missing[:3]}; run backward first")
        for k, p in params.items():
            if tuple(grads[k].shape) != tuple(p.shape):  # a broadcasting gradient would update every row alike
                raise ShapeError(f"{type(self).__name__}.step: the gradient of {k!r} has shape "
                                 f"{tuple(grads[k].shape)}, the parameter {tuple(p.shape)}")
        groups = flat.pairs(params, grads)
        if groups is not None:
            return self._step_flat(groups, params, grads, lr)
        norm = global_norm({k: grads[k] for k in params}) if self.clip_norm is not None else None
        scale = self._clip_scale(norm)
        self.t += 1
        for name, p in params.items():
            self._update_reference(p, grads[name], self._state_for(name, p), lr, scale)
        return norm

    def _step_flat(self, groups, params, grads, lr):
        """:meth:`step` over flat buffers: one fused kernel per buffer where the backend has the rule."""
        be = backends.of(groups[0][0])
        rule = flat.fused_rule(type(self)) if be.fused_optimizer else None
        norm = sumsq = None
        if self.clip_norm is not None and rule is not None:
            for _, g, _ in groups:  # a dot product each: the sum of squares stays on the device
                s = be.xp.dot(g, g)
                sumsq = s if sumsq is None else sumsq + s
            norm = be.xp.sqrt(sumsq)
        elif self.clip_norm is not None:
            norm = global_norm({k: grads[k] for k in params})
        scale = None if rule is not None else self._clip_scale(norm)
        self.t += 1
        self._flat.keep_only([p for p, _, _ in groups])
        l2 = 0.0 if self.decoupled_weight_decay else self.weight_decay
        for p, g, names in groups:
            state = self._flat.get(self, p, names, params)
            step = self._buffer_step(names)
            if step is False:  # per-parameter step counts differ (some were frozen a while): one at a time
                for n in names:
                    self._update_reference(params[n], grads[n], self.state[n], lr, self._clip_scale(norm))
                continue
            scalars = (l2, self.clip_norm or 0.0, *self.fused_args())
            number = self.t if step is None else step
            if rule is None or not be.fused_update(rule, p, g, state, scalars, lr, number, sumsq,
                                                   self._flat.workspace(p)):
                self._update_reference(p, g, state if step is None else {**state, "step": step - 1}, lr, scale)
            for n in names if step is not None else ():
                self.state[n]["step"] = step
        return norm

    def _buffer_step(self, names):
        """This step's number for a buffer's parameters by their own counters (``state["step"]``, Adam's):
        None when the rule keeps none, False when they differ."""
        counts = {self.state[n].get("step") for n in names}
        if counts == {None}:
            return None
        return counts.pop() + 1 if len(counts) == 1 else False

    def _clip_scale(self, norm):
        """The factor clipping multiplies every gradient by (a device scalar), or None without clipping."""
        if norm is None:
            return None
        return backends.of(norm).xp.minimum(1.0, self.clip_norm / (norm + 1e-6)).astype(norm.dtype)

    def _update_reference(self, p, g, state, lr, scale):
        """The per-parameter arithmetic of :meth:`step` on one (flat) parameter."""
        if scale is not None:
            g = g * scale
        if self.weight_decay and not self.decoupled_weight_decay:
            g = g + self.weight_decay * p
        self.update(p, g, state, lr)

    def _state_for(self, name, p):
        state = self.state.get(name)
        if state is None:
            state = self.state[name] = self.init_state(p)
        elif any(type(v) is not type(p) for v in state.values() if not isinstance(v, int)):
            be = backends.of(p)  # loaded from a checkpoint, or the model moved device
            state = self.state[name] = {k: v if isinstance(v, int) else be.asarray(v) for k, v in state.items()}
        return state

    def state_dict(self):
        """Step count, hyperparameters and per-parameter state as NumPy arrays (counters as 0-d int64)."""
        return {
            "type": type(self).__name__,
            "t": self.t,
            "hyperparams": self.hyperparams(),
            "state": {n: {k: _to_host(v) for k, v in s.items()} for n, s in self.state.items()},
        }

    def load_state_dict(self, d):
        """Restore what :meth:`state_dict` returned; arrays move to each parameter's device lazily."""
        if d.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {d.get('type')!r}, not {type(self).__name__}")
        self.t = int(d["t"])
        self.state = {n: {k: _from_host(v) for k, v in s.items()} for n, s in d["state"].items()}


def _to_host(value):
    """A NumPy copy of a state entry: arrays (step() updates the live ones in place), counters as 0-d int64."""
    if isinstance(value, int):
        return np.asarray(value, dtype=np.int64)
    return backends.of(value).asnumpy(value).copy()


def _from_host(value):
    """The live form of a saved state entry: a copy (never alias the dict), 0-d integers back to int."""
    value = np.asarray(value) if not hasattr(value, "ndim") else value
    if value.ndim == 0 and value.dtype.kind in "iu":
        return int(value)
    return value.copy()

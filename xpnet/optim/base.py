"""The Optimizer loop: clipping, weight decay, lazy per-parameter state; subclasses write one rule."""

import math

from xpnet import backends
from xpnet.errors import ShapeError


def _check(name, value, low=0.0, high=None, low_open=False):
    """Raise ValueError naming the hyperparameter unless it is finite and low <(=) value (< high)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (high is None or value < high)
    if not ok:
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
    #: The factor the loss is multiplied by before back-propagation; the gradients this optimizer's step
    #: takes carry it (1 here; mixed precision's dynamic loss scale in :class:`~xpnet.training.MixedPrecision`).
    loss_scale = 1.0

    def __init__(self, lr=0.01, weight_decay=0.0, clip_norm=None, schedule=None):
        self.lr, self.weight_decay, self.clip_norm = check_common(lr, weight_decay, clip_norm)
        self.schedule = schedule
        self.t = 0
        self.state = {}

    def hyperparams(self):
        """The constructor's keyword arguments (for state_dict and repr)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparams().items())
        return f"{type(self).__name__}({args})"

    def current_lr(self):
        """The learning rate the next step will use."""
        return self.lr * (float(self.schedule(self.t)) if self.schedule is not None else 1.0)

    def history_fields(self):
        """Extra per-epoch fields for the training history (none here)."""
        return {}

    def init_state(self, p):
        """Fresh per-parameter state (arrays on p's device)."""
        return {}

    def update(self, p, g, state, lr):
        """Update ``p`` in place from gradient ``g``; never modify ``g``."""
        raise NotImplementedError

    def step(self, params, grads):
        """One update of every parameter; returns the global gradient norm if clipping, else None."""
        lr = self.current_lr()
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"{type(self).__name__}.step: no gradient for {missing[:3]}; run backward first")
        for k, p in params.items():
            if tuple(grads[k].shape) != tuple(p.shape):  # a broadcasting gradient would update every row alike
                raise ShapeError(f"{type(self).__name__}.step: the gradient of {k!r} has shape "
                                 f"{tuple(grads[k].shape)}, the parameter {tuple(p.shape)}")
        norm = scale = None
        if self.clip_norm is not None:
            norm = global_norm({k: grads[k] for k in params})
            xp = backends.of(norm).xp
            scale = xp.minimum(1.0, self.clip_norm / (norm + 1e-6)).astype(norm.dtype)
        self.t += 1
        for name, p in params.items():
            g = grads[name] if scale is None else grads[name] * scale
            if self.weight_decay and not self.decoupled_weight_decay:
                g = g + self.weight_decay * p
            self.update(p, g, self._state_for(name, p), lr)
        return norm

    def _state_for(self, name, p):
        state = self.state.get(name)
        if state is None:
            state = self.state[name] = self.init_state(p)
        elif state and type(next(iter(state.values()))) is not type(p):
            be = backends.of(p)  # loaded from a checkpoint, or the model moved device
            state = self.state[name] = {k: be.asarray(v) for k, v in state.items()}
        return state

    def state_dict(self):
        """Step count, hyperparameters and per-parameter state as NumPy arrays."""
        return {
            "type": type(self).__name__,
            "t": self.t,
            "hyperparams": self.hyperparams(),
            # copies: on the NumPy backend asnumpy returns the live array, which step() updates in place
            "state": {n: {k: backends.of(v).asnumpy(v).copy() for k, v in s.items()} for n, s in self.state.items()},
        }

    def load_state_dict(self, d):
        """Restore what :meth:`state_dict` returned; arrays move to each parameter's device lazily."""
        if d.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {d.get('type')!r}, not {type(self).__name__}")
        self.t = int(d["t"])
        self.state = {n: {k: v.copy() for k, v in s.items()} for n, s in d["state"].items()}  # never alias d

"""Mixed-precision training: float16 model, float32 master weights, dynamic loss scaling.

The model computes in float16 (activations, GEMMs, gradients). :class:`MixedPrecision` wraps any
xpnet Optimizer: it keeps float32 master copies of the parameters, unscales the float16 gradients
into float32, lets the wrapped rule update the masters, and writes them back rounded to float16.
:class:`LossScaler` multiplies the loss before back-propagation so small gradients do not flush to
zero in float16, and backs off when a gradient overflows; that step is skipped entirely.
"""

import numpy as np

from xpnet import backends
from xpnet.optim.base import _check

MASTER = np.dtype(np.float32)
LOW = np.dtype(np.float16)


class LossScaler:
    """Dynamic loss scale: start at ``init``; x``growth`` after ``interval`` overflow-free steps in a row;
    x``backoff`` (and the step is skipped) on any non-finite gradient.

    Args:
        init: the first scale (2^16). growth: factor after a clean interval (2). backoff: factor on
            overflow (0.5). interval: overflow-free steps before growing (2000).
    """

    def __init__(self, init=2.0**16, growth=2.0, backoff=0.5, interval=2000):
        self.scale = _check("init", init, low_open=True)
        self.growth = _check("growth", growth, low=1.0)
        self.backoff = _check("backoff", backoff, low_open=True, high=1.0)
        if int(interval) != interval or interval < 1:
            raise ValueError(f"interval must be a positive integer, got {interval!r}")
        self.interval = int(interval)
        self.good_steps = 0
        self.skipped = 0

    def update(self, finite):
        """Record one step's outcome; returns True when its update should be applied."""
        if not finite:
            self.scale *= self.backoff
            self.good_steps = 0
            self.skipped += 1
            return False
        self.good_steps += 1
        if self.good_steps >= self.interval:
            self.scale *= self.growth
            self.good_steps = 0
        return True

    def state_dict(self):
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state_dict(self, d):
        self.scale, self.good_steps, self.skipped = float(d["scale"]), int(d["good_steps"]), int(d["skipped"])


def all_finite(grads):
    """True when every gradient is finite: one host read for the whole set."""
    flags = [backends.of(g).xp.isfinite(g).all() for g in grads.values()]
    if not flags:
        return True
    xp = backends.of(flags[0]).xp
    return bool(xp.stack(flags).all())


class MixedPrecision:
    """An Optimizer-like wrapper: float32 masters updated by ``optimizer``; the model's float16 copies follow.

    Args:
        optimizer: any xpnet Optimizer (its state lives in float32, beside the masters).
        scaler: a :class:`LossScaler` (default: 2^16, x2 every 2000 clean steps, x0.5 on overflow).

    Use: build the model in float32, wrap its optimizer with :meth:`attach` (which records the
    masters and casts the model to float16), then call ``model.backward(opt.loss_scale)`` and
    ``opt.step(model.params, model.grads)`` each step.
    """

    def __init__(self, optimizer, scaler=None):
        self.optimizer = optimizer
        self.scaler = scaler or LossScaler()
        self.master = {}

    # -- the Optimizer interface the Trainer and checkpoints use ------------------------------------
    @property
    def loss_scale(self):
        return self.scaler.scale

    @property
    def t(self):
        return self.optimizer.t

    def current_lr(self):
        return self.optimizer.current_lr()

    def history_fields(self):
        """The loss scale at the epoch's end and the steps skipped so far."""
        return {"loss_scale": self.scaler.scale, "skipped_steps": self.scaler.skipped}

    def __repr__(self):
        return f"MixedPrecision({self.optimizer!r}, loss_scale={self.scaler.scale:g})"

    def attach(self, model):
        """Copy the model's parameters as float32 masters and cast the model to float16; returns self."""
        self.master = {k: p.astype(MASTER, copy=True) for k, p in model.params.items()}
        model.astype(LOW)
        return self

    def step(self, params, grads):
        """Unscale, check, update the masters and copy them into ``params``; returns True if applied.

        A non-finite gradient anywhere skips the whole update (masters, optimizer state and
        ``params`` are untouched) and halves the loss scale.
        """
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"MixedPrecision.step: no gradient for {missing[:3]}; run backward first")
        self._sync_masters(params)
        inv = MASTER.type(1.0 / self.scaler.scale)  # the scale this step's gradients carry
        if not self.scaler.update(all_finite({k: grads[k] for k in params})):
            return False
        unscaled = {k: grads[k].astype(MASTER) * inv for k in params}
        self.optimizer.step({k: self.master[k] for k in params}, unscaled)  # only these: some may be frozen
        for k, p in params.items():
            p[...] = self.master[k].astype(p.dtype)
        return True

    def _sync_masters(self, params):
        """Create the masters on first use; move them to the parameters' device after a resume."""
        if not self.master:
            self.master = {k: p.astype(MASTER, copy=True) for k, p in params.items()}
        be = backends.of(next(iter(params.values())))
        for k, v in self.master.items():
            if not be.owns(v):
                self.master[k] = be.asarray(v, dtype=MASTER)

    def copy_masters_to(self, model):
        """Cast ``model`` to float32 and load the master weights into it (for saving); returns model."""
        model.astype(MASTER)
        for k in model.params:
            model.net.set_array(k, self.master[k].copy(), "params")
        return model

    def state_dict(self):
        d = self.optimizer.state_dict()
        d["type"], d["inner"] = "MixedPrecision", d["type"]
        d["loss_scaler"] = self.scaler.state_dict()
        d["state"] = {**d["state"], **{f"{k}#master": {"w": backends.of(v).asnumpy(v).copy()}
                                       for k, v in self.master.items()}}
        return d

    def load_state_dict(self, d):
        d = dict(d)
        state = dict(d["state"])
        masters = {k[: -len("#master")]: state.pop(k)["w"] for k in list(state) if k.endswith("#master")}
        inner = type(self.optimizer).__name__
        if d.get("type") != "MixedPrecision" or d.get("inner") != inner:
            raise ValueError(f"optimizer state is for {d.get('type')!r}[{d.get('inner')!r}], "
                             f"not MixedPrecision[{inner}]")
        self.scaler.load_state_dict(d["loss_scaler"])
        self.optimizer.load_state_dict({**d, "type": inner, "state": state})
        self.master = masters

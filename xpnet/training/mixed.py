"""Mixed-precision training: float16 model, float32 master weights, dynamic loss scaling.

The model computes in float16 (activations, GEMMs, gradients). :class:`MixedPrecision`, the precision
policy a Trainer is given beside a plain Optimizer, keeps float32 master copies of the parameters,
unscales the float16 gradients into float32, lets the optimizer update the masters, and writes them back
rounded to float16 into the parameters it is handed.
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
    """A precision policy: float32 masters updated by the optimizer; the float16 parameters follow.

    Args:
        master: the parameters of the model in float32 (``model.params`` before the caller casts the model
            to float16): float32 copies of them are the master weights. None: copies of the first step's
            parameters.
        scaler: a :class:`LossScaler` (default: 2^16, x2 every 2000 clean steps, x0.5 on overflow).

    Use: build the model in float32, make ``MixedPrecision(model.params)``, cast the model with
    ``model.astype("float16")``, and give both, with any plain Optimizer, to the Trainer, which calls
    ``model.backward(precision.loss_scale)`` and ``precision.step(optimizer, params, grads)`` each step.
    The optimizer's state lives in float32, beside the masters.
    """

    def __init__(self, master=None, scaler=None):
        self.scaler = scaler or LossScaler()
        self.master = {k: p.astype(MASTER, copy=True) for k, p in (master or {}).items()}

    @property
    def loss_scale(self):
        return self.scaler.scale

    def history_fields(self):
        """The loss scale at the epoch's end and the steps skipped so far."""
        return {"loss_scale": self.scaler.scale, "skipped_steps": self.scaler.skipped}

    def __repr__(self):
        return f"MixedPrecision(loss_scale={self.scaler.scale:g})"

    def step(self, optimizer, params, grads):
        """Unscale, check, let ``optimizer`` update the masters and copy them into ``params``; returns True if
        applied.

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
        optimizer.step({k: self.master[k] for k in params}, unscaled)  # only these: some may be frozen
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

    def master_weights(self):
        """The float32 master weights as NumPy copies, by parameter name (what a saved model holds)."""
        return {k: backends.of(v).asnumpy(v).copy() for k, v in self.master.items()}

    def state_dict(self):
        """The loss scaler's state and, under ``"arrays"``, the master weights (NumPy copies)."""
        return {"type": "MixedPrecision", "loss_scaler": self.scaler.state_dict(), "arrays": self.master_weights()}

    def load_state_dict(self, d):
        if d.get("type") != "MixedPrecision":
            raise ValueError(f"precision state is for {d.get('type')!r}, not MixedPrecision")
        self.scaler.load_state_dict(d["loss_scaler"])
        self.master = {k: v.copy() for k, v in d["arrays"].items()}  # never alias d

"""Optimizers, gradient clipping and learning-rate schedules."""

from xpnet.optim.base import Optimizer, global_norm
from xpnet.optim.rules import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSprop
from xpnet.optim.schedules import Constant, Cosine, StepDecay, Warmup

OPTIMIZERS = {c.__name__.lower(): c for c in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam, AdamW)}


def get(name, **kwargs):
    """Build an optimizer by (case-insensitive) name, e.g. ``get("adam", lr=1e-3)``."""
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}") from None
    return cls(**kwargs)


__all__ = ["OPTIMIZERS", "SGD", "AdaGrad", "Adam", "AdamW", "Constant", "Cosine", "Momentum", "Nesterov",
           "Optimizer", "RMSprop", "StepDecay", "Warmup", "get", "global_norm"]

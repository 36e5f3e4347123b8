"""Optimizers, gradient clipping and learning-rate schedules."""

from xpnet.optim.average import WeightAverage
from xpnet.optim.base import Optimizer, check_common, global_norm
from xpnet.optim.rules import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSprop
from xpnet.optim.schedules import Constant, Cosine, StepDecay, Warmup

OPTIMIZERS = {c.__name__.lower(): c for c in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam, AdamW)}


def find(name):
    """The optimizer class of a (case-insensitive) name; ValueError listing the valid names."""
    try:
        return OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}") from None


def get(name, **kwargs):
    """Build an optimizer by (case-insensitive) name, e.g. ``get("adam", lr=1e-3)``."""
    return find(name)(**kwargs)


__all__ = ["OPTIMIZERS", "SGD", "AdaGrad", "Adam", "AdamW", "Constant", "Cosine", "Momentum", "Nesterov",
           "Optimizer", "RMSprop", "StepDecay", "Warmup", "WeightAverage", "check_common", "find", "get", "global_norm"]

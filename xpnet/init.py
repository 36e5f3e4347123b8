"""Weight initializers. They draw on the host in float64 so every backend gets the same numbers."""

import contextlib
import contextvars
import math

import numpy as np

_BUDGET = contextvars.ContextVar("xpnet_init_budget", default=None)


class BudgetExceeded(ValueError):
    """A model asked for more weights than :func:`allocation_budget` allows."""


@contextlib.contextmanager
def allocation_budget(values):
    """Within the block, :func:`initialize` refuses to draw more than ``values`` numbers in all.

    Used when building a model that a file describes: the file holds ``values`` numbers, so a config
    declaring a larger model is refused before its weights are allocated.
    """
    token = _BUDGET.set([int(values)])
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _spend(shape):
    budget = _BUDGET.get()
    if budget is None:
        return
    n = math.prod(int(d) for d in shape)
    if n > budget[0]:
        raise BudgetExceeded(f"a weight of shape {tuple(shape)} ({n:,} values) exceeds the {budget[0]:,} left")
    budget[0] -= n


def he_normal(shape, fan_in, rng=None):
    """N(0, 2 / fan_in): for layers followed by ReLU (He et al. 2015)."""
    return _normal(shape, np.sqrt(2.0 / fan_in), rng)


def xavier_normal(shape, fan_in, rng=None):
    """N(0, 1 / fan_in): for sigmoid/tanh layers (the book's "Xavier")."""
    return _normal(shape, np.sqrt(1.0 / fan_in), rng)


def normal(shape, std, rng=None):
    """N(0, std^2)."""
    return _normal(shape, float(std), rng)


def _normal(shape, std, rng):
    rng = rng if rng is not None else np.random.default_rng()
    return rng.standard_normal(shape) * std


def initialize(spec, shape, fan_in, rng=None):
    """Draw a weight array by name (``"he"``/``"relu"``, ``"xavier"``/``"sigmoid"``) or by std (a float)."""
    _spend(shape)
    if isinstance(spec, str):
        key = spec.lower()
        if key in ("he", "relu"):
            return he_normal(shape, fan_in, rng)
        if key in ("xavier", "sigmoid", "tanh"):
            return xavier_normal(shape, fan_in, rng)
        raise ValueError(f"weight_init must be 'he', 'xavier' or a float std, got {spec!r}")
    std = float(spec)
    if not std > 0:
        raise ValueError(f"weight_init std must be positive, got {spec!r}")
    return normal(shape, std, rng)


def bilinear_kernel(shape):
    """Weights (C, C, K, K) of a transposed convolution that upsamples each channel bilinearly (FCN).

    Channel c maps to channel c only, with the separable tent filter
    ``(1 - |i - center| / f) * (1 - |j - center| / f)``, ``f = (K + 1) // 2``; with kernel ``2 * s``,
    stride ``s`` and pad ``s // 2`` it interpolates like bilinear resizing by ``s`` away from the borders.

    Raises:
        ValueError: ``shape`` is not (C, C, KH, KW) (the filter maps a channel to itself).
    """
    C, FN, KH, KW = shape
    if C != FN:
        raise ValueError(f"bilinear initialisation maps each channel to itself: needs in_channels == "
                         f"out_channels, got {C} and {FN}")
    W = np.zeros(shape)
    W[np.arange(C), np.arange(C)] = np.outer(_tent(KH), _tent(KW))
    return W


def _tent(size):
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1 - np.abs(np.arange(size) - center) / factor

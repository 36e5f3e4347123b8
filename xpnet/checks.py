"""Argument checks shared by layers and models: one ValueError naming the owner, the argument and the value."""

import math

MAX_DIM = 1 << 24  # no layer width, channel count or image side is larger: bigger is a typo or a hostile file


def integer(owner, name, value, low=1, high=MAX_DIM):
    """``value`` as an int, or ValueError unless it is an integer (not a bool or 3.5) in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and hasattr(value, "__index__") and not isinstance(value, bool):
        value, ok = int(value.__index__()), True  # NumPy integers
    if not ok or not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def integers(owner, name, values, low=1, length=None):
    """A list or tuple of integers in [low, MAX_DIM] (``length`` of them, if given)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ValueError(f"{owner}: {name} must be a list of integers, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{owner}: {name} must be a list of {length} integers, got {values!r}")
    try:
        return [integer(owner, name, v, low) for v in values]
    except ValueError:
        raise ValueError(f"{owner}: {name} must be a list of integers in [{low}, {MAX_DIM}], got {values!r}") from None


def in_range(value, low=0.0, high=math.inf, low_open=False, high_open=False):
    """True when ``value`` is a finite real number (not a bool) within the bounds."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)


def number(owner, name, value, low=0.0, high=math.inf, low_open=False, high_open=False):
    """``value`` as a float, or ValueError unless it is a finite real number within the bounds."""
    if not in_range(value, low, high, low_open, high_open):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{owner}: {name} must be a finite number in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return float(value)


def flag(owner, name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be true or false, got {value!r}")
    return value


def weight_init(owner, name, value):
    """A named initializer or a positive finite std."""
    if isinstance(value, str):
        if value.lower() not in ("he", "relu", "xavier", "sigmoid", "tanh"):
            raise ValueError(f"{owner}: {name} must be 'he', 'xavier' or a positive number, got {value!r}")
        return value
    return number(owner, name, value, low_open=True)


def common(owner, input_dim=None, output_size=None, seed=None, dropout_ratio=None):
    """The arguments every model shares: input_dim (C, H, W), output_size, seed, dropout_ratio."""
    if input_dim is not None:
        integers(owner, "input_dim", input_dim, length=3)
    if output_size is not None:
        integer(owner, "output_size", output_size)
    if seed is not None:
        integer(owner, "seed", seed, low=0, high=2**63 - 1)
    if dropout_ratio is not None:
        number(owner, "dropout_ratio", dropout_ratio, high=1.0, high_open=True)

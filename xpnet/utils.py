"""Small shared helpers."""


def pair(value, name="value"):
    """Return ``(a, b)`` for an int or a 2-sequence of non-negative ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        out = (value, value)
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(out) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if out[0] < 0 or out[1] < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return out


def conv_output_size(size, kernel, stride, pad):
    """Output length of a convolution or pooling window along one axis."""
    return (size + 2 * pad - kernel) // stride + 1

"""Pooling by looping over the KH*KW window taps with strided views (any window, stride, padding).

No im2col: each tap is one strided slice of the padded input, so memory traffic is about KH*KW
passes over the output. Written against ``xp`` so every backend can use it; the backward adds taps
in (kh, kw) order, so it is deterministic.
"""

from xpnet.backends.shapes import out_size


def _tap(a, kh, kw, SH, SW, OH, OW):
    """The (N, C, OH, OW) strided view of tap (kh, kw)."""
    return a[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW]


def _pad(xp, x, PH, PW, value):
    if not (PH or PW):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), mode="constant", constant_values=value)


def _first_tap(xpad, SH, SW, OH, OW, out):
    """Tap (0, 0) copied into ``out`` or into a new array in the input's memory order."""
    first = _tap(xpad, 0, 0, SH, SW, OH, OW)
    if out is None:
        return first.copy(order="K")  # keep the input's memory order
    out[...] = first
    return out


def max_forward(xp, x, KH, KW, stride, pad, OH, OW, out=None):
    """Window maxima (N, C, OH, OW) and a cache for :func:`max_backward` (the padded input, no copy).

    ``out``: where to write the maxima (a new array in the input's memory order when None).
    """
    (SH, SW), (PH, PW) = stride, pad
    xpad = _pad(xp, x, PH, PW, float("-inf"))
    out = _first_tap(xpad, SH, SW, OH, OW, out)
    for k in range(1, KH * KW):
        xp.maximum(out, _tap(xpad, k // KW, k % KW, SH, SW, OH, OW), out=out)
    return out, (xpad, out)


def max_backward(xp, dout, cache, x_shape, KH, KW, stride, pad, out=None):
    """Route each output gradient to its window's first maximum in (kh, kw) order.

    The argmax is found here, not in the forward pass, so inference pays nothing for it. ``out``: where
    to write dL/dx (a new array when None).
    """
    xpad, pooled = cache
    _, _, OH, OW = pooled.shape
    (SH, SW), last = stride, KH * KW - 1
    hit, taken = xp.empty(pooled.shape, dtype=bool), None

    def grad_into(k, view, add):
        nonlocal taken
        xp.equal(_tap(xpad, k // KW, k % KW, SH, SW, OH, OW), pooled, out=hit)
        if taken is None:
            taken = hit.copy()
        else:
            xp.greater(hit, taken, out=hit)  # hit and not taken: an earlier tap had the maximum
            if k < last:
                taken |= hit
        if add:
            view += dout * hit
        else:
            xp.multiply(dout, hit, out=view)  # one pass: the gradient or 0, straight into dx

    return _scatter_taps(xp, x_shape, KH, KW, stride, pad, dout.dtype, grad_into, out)


def avg_forward(xp, x, KH, KW, stride, pad, OH, OW, out=None):
    """Window means, padding counted as zeros (count_include_pad); written to ``out`` if given."""
    (SH, SW), (PH, PW) = stride, pad
    xpad = _pad(xp, x, PH, PW, 0)
    out = _first_tap(xpad, SH, SW, OH, OW, out)
    for k in range(1, KH * KW):
        out += _tap(xpad, k // KW, k % KW, SH, SW, OH, OW)
    out *= x.dtype.type(1.0 / (KH * KW))
    return out


def avg_backward(xp, dout, x_shape, KH, KW, stride, pad, out=None):
    """Spread each output gradient evenly over its window (into ``out`` if given)."""
    share = dout * dout.dtype.type(1.0 / (KH * KW))

    def grad_into(k, view, add):
        if add:
            view += share
        else:
            view[...] = share

    return _scatter_taps(xp, x_shape, KH, KW, stride, pad, dout.dtype, grad_into, out)


def _scatter_taps(xp, x_shape, KH, KW, stride, pad, dtype, grad_into, out=None):
    """dx from ``grad_into(k, view, add)``, which writes (or adds, where windows overlap) tap k's gradient."""
    N, C, H, W = x_shape
    (SH, SW), (PH, PW) = stride, pad
    OH, OW = out_size(H, W, KH, KW, stride, pad)
    non_overlapping = SH >= KH and SW >= KW
    if out is not None and not (PH or PW):
        dx = out
        if not (non_overlapping and (SH, SW) == (KH, KW) and (OH * SH, OW * SW) == (H, W)):
            dx[...] = 0  # some inputs are in no window, or in several: start from zero
    else:
        dx = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dtype)
    for k in range(KH * KW):  # where windows do not overlap, each input element gets one tap at most
        grad_into(k, _tap(dx, k // KW, k % KW, SH, SW, OH, OW), not non_overlapping)
    if PH or PW:
        inner = dx[:, :, PH : PH + H, PW : PW + W]
        if out is None:
            return xp.ascontiguousarray(inner)
        out[...] = inner
        return out
    return dx

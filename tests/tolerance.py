"""Float tolerances derived from the computation: the suite's one rule for comparing floats.

Two computations of the same value (two BLAS blockings, a split and an unsplit batch, a GPU kernel and
a CPU one, float32 code against a float64 reference) differ by rounding, not by a figure someone
tuned on one machine. Each of the K operations along the chain that produces one value rounds by at
most eps/2 relative to what it holds; for a sum of K terms of size s the partial sums grow like
sqrt(K)·s and their K rounding errors add like a random walk, so one computation is off by about
sqrt(K)·(eps/2)·sqrt(K)·s = K·eps·s / 2 and two of them differ by about K·eps·s. The bound is

    bound = safety · terms · eps(dtype) · scale,      safety = SAFETY = 4 by default

where the safety factor covers the tail over many compared elements and ``scale`` being an estimate.
It is an absolute bound (rtol=0); ``scale`` may be an array, for a bound per element.

Use (``tests/`` is on the path when pytest runs)::

    from tolerance import assert_close, bound
    assert_close(got, want, terms=C * KH * KW, dtype=np.float32)        # conv of unit-size data
    assert np.all(np.abs(got - want) <= bound(np.float16, terms=3, scale=np.abs(want)))  # the number itself

Choosing the arguments:
    terms: roundings along the longest chain giving one value: the length of a dot product
        (C·KH·KW for a convolution, D for an affine layer), plus one per further element-wise step.
    scale: the size of one term (standard-normal data: 1 per factor, so products of two are 1),
        or of the value for element-wise work (|result|).
    dtype: the least precise dtype the computation ran in (a float64 reference adds nothing).
"""

import numpy as np

SAFETY = 4.0


def bound(dtype, *, terms, scale=1.0, safety=SAFETY):
    """``safety * terms * eps(dtype) * scale``: the largest difference two roundings may make."""
    if not terms > 0 or np.any(np.asarray(scale) < 0):
        raise ValueError(f"tolerance: terms must be > 0 and scale >= 0, got terms={terms!r}, scale={scale!r}")
    return safety * terms * float(np.finfo(np.dtype(dtype)).eps) * np.asarray(scale, dtype=np.float64)


def assert_close(actual, expected, *, terms, scale=1.0, dtype=None, safety=SAFETY, err_msg=""):
    """Assert |actual - expected| <= :func:`bound` element-wise (equal infinities and NaNs pass).

    Args:
        actual, expected: NumPy arrays or scalars of one shape (``asnumpy`` device arrays first);
            ``expected`` may be a scalar.
        terms, scale, safety: as in :func:`bound`; ``scale`` may be an array broadcasting to the shape.
        dtype: the precision the computation ran in; default: the less precise of the two inputs'.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    if expected.ndim and actual.shape != expected.shape:
        raise AssertionError(f"{err_msg}: shape {actual.shape} where {expected.shape} was expected")
    if dtype is None:
        floats = [a.dtype for a in (actual, expected) if a.dtype.kind == "f"] or [np.dtype(np.float64)]
        dtype = max(floats, key=lambda d: np.finfo(d).eps)
    limit = np.broadcast_to(bound(dtype, terms=terms, scale=scale, safety=safety), actual.shape)
    a, e = actual.astype(np.float64), np.broadcast_to(expected.astype(np.float64), actual.shape)
    with np.errstate(invalid="ignore"):  # inf - inf: equal infinities pass through a == e
        diff = np.abs(a - e)
    ok = (diff <= limit) | (a == e) | (np.isnan(a) & np.isnan(e))
    if not ok.all():
        at = np.unravel_index(np.argmax(np.where(ok, -np.inf, np.nan_to_num(diff / limit, nan=np.inf))), ok.shape)
        raise AssertionError(
            f"{err_msg + ': ' if err_msg else ''}{int((~ok).sum())} of {ok.size} elements differ by more than "
            f"{safety:g} x {terms} terms x eps({np.dtype(dtype).name}) x scale; worst at {tuple(int(i) for i in at)}: "
            f"{float(a[at])!r} vs {float(e[at])!r}, |diff| {diff[at]:.3g} > bound {limit[at]:.3g}")

"""Batch normalisation in any array module ``xp`` (NumPy, CuPy): the backends' generic BatchNorm.

Statistics, normalisation and gradients run in :func:`xpnet.precision.compute_dtype` of the input (float32
for float16); outputs come back in the input's dtype. The NumPy backend runs float32 (N, C, H, W) arrays
through compiled kernels instead (numpy_batchnorm); this is the code they stand in for.
"""

import collections

from xpnet import precision

Normalized = collections.namedtuple("Normalized", "xn std axes batch_stats")  # what backward needs


def layout(ndim):
    """``(axes reduced over, shape of a per-channel array)`` for (N, D) (``ndim`` 2) or (N, C, H, W) input."""
    return ((0,), (1, -1)) if ndim == 2 else ((0, 2, 3), (1, -1, 1, 1))


def forward(xp, x, gamma, beta, eps, stats=None):
    """``(y, (mean, var), Normalized cache)``; arguments and results as in ``Backend.batchnorm_forward``."""
    axes, bshape = layout(x.ndim)
    dtype, x = x.dtype, precision.widen(x)
    g, b = (precision.widen(p).reshape(bshape) for p in (gamma, beta))
    if stats is None:
        mu = x.mean(axis=axes, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=axes, keepdims=True)
    else:
        mu = precision.widen(stats[0]).reshape(bshape)
        xc = x - mu
        var = precision.widen(stats[1]).reshape(bshape)
    std = xp.sqrt(var + eps)
    xn = xc / std
    y = (xn * g + b).astype(dtype, copy=False)
    return y, (mu.reshape(-1), var.reshape(-1)), Normalized(xn, std, axes, stats is None)


def backward(dout, cache, gamma):
    """``(dx, dgamma, dbeta)`` of :func:`forward`; as in ``Backend.batchnorm_backward``."""
    xn, std, axes, batch_stats = cache
    dtype, dout = dout.dtype, precision.widen(dout)
    dgamma, dbeta = (dout * xn).sum(axis=axes), dout.sum(axis=axes)
    dxn = dout * precision.widen(gamma).reshape(std.shape)
    if not batch_stats:  # frozen statistics: y = gamma * (x - mean) / std + beta is affine in x
        return (dxn / std).astype(dtype, copy=False), dgamma, dbeta
    mean_dxn = dxn.mean(axis=axes, keepdims=True)
    mean_dxn_xn = (dxn * xn).mean(axis=axes, keepdims=True)
    return ((dxn - mean_dxn - xn * mean_dxn_xn) / std).astype(dtype, copy=False), dgamma, dbeta

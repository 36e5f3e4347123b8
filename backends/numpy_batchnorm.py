"""The NumPy backend's BatchNorm: compiled kernels (cpu_batchnorm.c) for float32 (N, C, H, W) arrays, the
channels split over threads; everything else (2-D input, other dtypes, no extension) runs the generic xp
code (backends/batchnorm.py).

The kernels keep the input and the per-channel statistics for backward (xn is recomputed from them),
where the generic code keeps xn itself. Their sums run in double, so they are at least as accurate as
the generic float32 code; they are not bit for bit the same. Each channel is one thread's, summed in a
fixed order: the results do not depend on the thread count.
"""

import collections

import numpy as np

from xpnet.backends import batchnorm, cpu_kernels, numpy_split

Kept = collections.namedtuple("Kept", "x stats batch_stats")  # the compiled forward's cache: x, (3, C) float64


def takes(x, gamma, beta):
    """Whether the kernels run this forward: float32 (N, C, H, W) ``x`` and parameters, and the kernels built."""
    return (x.ndim == 4 and x.dtype == gamma.dtype == beta.dtype == np.float32 and not cpu_kernels.unavailable())


def _planar(a):
    """``a``, or a C-contiguous copy where its (H, W) planes are not contiguous (channels last, strided views)."""
    return a if cpu_kernels.plane_strides(a) else np.ascontiguousarray(a)


def _channels(split, fn, x):
    """``fn(c0, c1)`` over slices of x's channels, on the splitter's threads."""
    per = max(1, numpy_split.MIN_SLICE // max(1, x.shape[0] * x.shape[2] * x.shape[3]))
    split.run(lambda k, c0, c1: fn(c0, c1), x.shape[1], per, blas=False)


def forward(split, x, gamma, beta, eps, stats=None):
    """As ``Backend.batchnorm_forward`` (``takes`` must hold); y laid out like x (channel-major stays so)."""
    x = _planar(x)
    y = np.empty_like(x)
    kept = np.empty((3, x.shape[1]), np.float64)
    if stats is not None:
        kept[0], kept[1] = stats
    gamma, beta = (np.ascontiguousarray(p) for p in (gamma, beta))
    _channels(split, lambda c0, c1: cpu_kernels.batchnorm_forward(x, y, gamma, beta, kept, eps, stats is None,
                                                                   c0, c1), x)
    return y, (kept[0].astype(np.float32), kept[1].astype(np.float32)), Kept(x, kept, stats is None)


def backward(split, dout, cache, gamma):
    """As ``Backend.batchnorm_backward`` for the cache of :func:`forward`; dx laid out like x."""
    if dout.dtype != np.float32:  # another dtype's gradient: the generic code, which computes in its dtype
        return batchnorm.backward(dout, normalized(cache), gamma)
    x, dout, gamma = cache.x, _planar(dout), np.ascontiguousarray(gamma)
    dx = np.empty_like(x)
    grads = np.empty((2, x.shape[1]), np.float32)
    _channels(split, lambda c0, c1: cpu_kernels.batchnorm_backward(x, dout, dx, gamma, cache.stats, grads,
                                                                    cache.batch_stats, c0, c1), x)
    return dx, grads[0], grads[1]


def normalized(cache):
    """The generic code's cache (``batchnorm.Normalized``) for a compiled forward's."""
    bshape = (1, -1, 1, 1)
    mean, invstd = (cache.stats[i].astype(np.float32).reshape(bshape) for i in (0, 2))
    return batchnorm.Normalized((cache.x - mean) * invstd, 1 / invstd, (0, 2, 3), cache.batch_stats)

"""The NumPy backend's pooling, ReLU, LeakyReLU and large matrix products, run on slices of the batch in threads.

Max pooling, ReLU and LeakyReLU run the compiled kernels of cpu_kernels on each slice where they take the arrays
(float32, laid out as they address them; same bits as the NumPy code), else NumPy: ``pooling.py``'s tap
loops and ufuncs. Convolution's slices are in numpy_conv.

Outputs and gradients are allocated in the input's memory order (channel-major after the NumPy
convolution, see numpy_conv), so the next layer's transpose stays free.
"""

import numpy as np

from xpnet.backends import cpu_kernels, pooling

MIN_SLICE = 1 << 15  # elements: a smaller slice costs more to hand to a thread than to compute


def _per_thread(a):
    """Images per slice at least, so that each slice holds MIN_SLICE elements."""
    return max(1, MIN_SLICE // max(1, a[0].size))


def _empty(like, shape, dtype):
    """A new (N, C, ...) array laid out like ``like``: channel-major memory if ``like`` is."""
    N, C = shape[:2]
    if like.ndim == 4 and like.strides[1] > like.strides[0]:
        return np.empty((C, N, *shape[2:]), dtype).transpose(1, 0, 2, 3)
    return np.empty(shape, dtype)


def max_forward(split, x, KH, KW, stride, pad, OH, OW):
    N, C = x.shape[:2]
    out = _empty(x, (N, C, OH, OW), x.dtype)
    if cpu_kernels.pools(KH, KW, stride, pad) and cpu_kernels.plane_strides(x) and cpu_kernels.plane_strides(out):
        dims = cpu_kernels.pool_dims(x.shape, KH, KW, stride, pad, OH, OW)
        split.run(lambda k, n0, n1: cpu_kernels.max_forward(x, out, dims, n0, n1), N, _per_thread(x), blas=False)
        return out, cpu_kernels.PoolCache(x, out)
    return out, (_max_caches(split, x, KH, KW, stride, pad, out), x)


def _max_caches(split, x, KH, KW, stride, pad, out):
    """The NumPy pooling's per-slice caches (maxima written into ``out``)."""
    OH, OW = out.shape[2:]
    return split.run(lambda k, n0, n1: pooling.max_forward(np, x[n0:n1], KH, KW, stride, pad, OH, OW,
                                                           out=out[n0:n1])[1], len(x), _per_thread(x))


def max_backward(split, dout, cache, x_shape, KH, KW, stride, pad):
    if isinstance(cache, cpu_kernels.PoolCache):
        if dout.dtype == np.float32:
            return _compiled_max_backward(split, dout, cache, x_shape, KH, KW, stride, pad)
        x = cache.x  # a gradient in another dtype: NumPy's code, from the maxima found again
        cache = (_max_caches(split, x, KH, KW, stride, pad, _empty(x, cache.pooled.shape, x.dtype)), x)
    caches, x = cache
    dx = _empty(x, x_shape, dout.dtype)

    def part(k, n0, n1):
        pooling.max_backward(np, dout[n0:n1], caches[k], (n1 - n0, *x_shape[1:]), KH, KW, stride, pad,
                             out=dx[n0:n1])

    split.run(part, x_shape[0], _per_thread(x))
    return dx


def _compiled_max_backward(split, dout, cache, x_shape, KH, KW, stride, pad):
    dx = _empty(cache.x, x_shape, np.float32)
    if not cpu_kernels.plane_strides(dout):
        dout = np.ascontiguousarray(dout)
    dims = cpu_kernels.pool_dims(x_shape, KH, KW, stride, pad, *cache.pooled.shape[2:])
    split.run(lambda k, n0, n1: cpu_kernels.max_backward(cache, dout, dx, dims, n0, n1), x_shape[0],
              _per_thread(cache.x), blas=False)
    return dx


def avg_forward(split, x, KH, KW, stride, pad, OH, OW):
    N, C = x.shape[:2]
    out = _empty(x, (N, C, OH, OW), x.dtype)
    split.run(lambda k, n0, n1: pooling.avg_forward(np, x[n0:n1], KH, KW, stride, pad, OH, OW, out=out[n0:n1]), N,
              _per_thread(x))
    return out


def avg_backward(split, dout, x_shape, KH, KW, stride, pad):
    dx = _empty(dout, x_shape, dout.dtype)
    split.run(lambda k, n0, n1: pooling.avg_backward(np, dout[n0:n1], (n1 - n0, *x_shape[1:]), KH, KW, stride, pad,
                                                     out=dx[n0:n1]), x_shape[0], _per_thread(dx))
    return dx


def relu(split, x):
    y = _empty(x, x.shape, x.dtype)
    layout = x.dtype == np.float32 and cpu_kernels.run_layout(x, y)
    if layout:
        split.run(lambda k, n0, n1: cpu_kernels.relu_forward(x, y, None, layout, n0, n1), len(x), _per_thread(x),
                  blas=False)
    else:
        split.run(lambda k, n0, n1: np.maximum(x[n0:n1], 0, out=y[n0:n1]), len(x), _per_thread(x))
    return y


def relu_forward(split, x):
    y, mask = _empty(x, x.shape, x.dtype), _empty(x, x.shape, bool)
    layout = x.dtype == np.float32 and cpu_kernels.run_layout(x, y, mask)

    def part(k, n0, n1):
        if layout:
            cpu_kernels.relu_forward(x, y, mask, layout, n0, n1)
            return
        np.greater(x[n0:n1], 0, out=mask[n0:n1])
        np.maximum(x[n0:n1], 0, out=y[n0:n1])

    split.run(part, len(x), _per_thread(x), blas=not layout)
    return y, mask


def relu_backward(split, dout, mask):
    dx = _empty(dout, dout.shape, dout.dtype)
    layout = dout.dtype == np.float32 and mask.dtype == np.bool_ and cpu_kernels.run_layout(dout, mask, dx)
    if layout:
        split.run(lambda k, n0, n1: cpu_kernels.relu_backward(dout, mask, dx, layout, n0, n1), len(dout),
                  _per_thread(dout), blas=False)
    else:
        split.run(lambda k, n0, n1: np.multiply(dout[n0:n1], mask[n0:n1], out=dx[n0:n1]), len(dout),
                  _per_thread(dout))
    return dx


def leaky_relu(split, x, slope):
    """``where(x > 0, x, x * slope)`` alone (inference: no mask), laid out like ``x``."""
    return _leaky_relu(split, x, slope, None)


def leaky_relu_forward(split, x, slope):
    """``(where(x > 0, x, x * slope), mask x > 0)``, both laid out like ``x``."""
    mask = _empty(x, x.shape, bool)
    return _leaky_relu(split, x, slope, mask), mask


def _leaky_relu(split, x, slope, mask):
    y, s = _empty(x, x.shape, x.dtype), x.dtype.type(slope)
    layout = x.dtype == np.float32 and cpu_kernels.planes(x, y)  # the mask, made as y is, has y's layout

    def part(k, n0, n1):
        if layout:
            cpu_kernels.leaky_relu_forward(x, y, mask, s, layout, n0, n1)
            return
        xs, ys = x[n0:n1], y[n0:n1]
        keep = xs > 0 if mask is None else np.greater(xs, 0, out=mask[n0:n1])
        np.multiply(xs, s, out=ys)
        np.copyto(ys, xs, where=keep)

    split.run(part, len(x), _per_thread(x), blas=not layout)
    return y


def leaky_relu_backward(split, dout, mask, slope):
    """``where(mask, dout, dout * slope)``, laid out like the mask (the forward input's order, which the layer
    before, a convolution, wants its gradient in)."""
    dx, s = _empty(mask, mask.shape, dout.dtype), dout.dtype.type(slope)
    layout = None
    if dout.dtype == np.float32 and mask.dtype == np.bool_ and _same_planes(mask, dx):
        if not cpu_kernels.planes(dout):
            dout = np.ascontiguousarray(dout)
        layout = cpu_kernels.planes(dout, mask)

    def part(k, n0, n1):
        if layout:
            cpu_kernels.leaky_relu_backward(dout, mask, dx, s, layout, n0, n1)
            return
        np.multiply(dout[n0:n1], s, out=dx[n0:n1])
        np.copyto(dx[n0:n1], dout[n0:n1], where=mask[n0:n1])

    split.run(part, len(dout), _per_thread(dout), blas=not layout)
    return dx


def _same_planes(a, b):
    """Whether the kernels address ``a`` and ``b`` alike (the element strides of one layout)."""
    layout = cpu_kernels.planes(a, b)
    return bool(layout) and layout.strides[:2] == layout.strides[2:]


MIN_MATMUL = 1 << 22  # multiply-adds: below this a product is faster on one thread than split


def matmul(split, a, b):
    """``a @ b`` split over the rows of ``a`` or the columns of ``b`` (whichever is longer); exact per slice."""
    (M, K), N = a.shape, b.shape[1]
    if M * K * N < MIN_MATMUL or split.threads == 1:
        return a @ b
    out = np.empty((M, N), np.result_type(a, b))
    if M >= N:
        split.run(lambda k, r0, r1: np.matmul(a[r0:r1], b, out=out[r0:r1]), M)
    else:
        split.run(lambda k, c0, c1: np.matmul(a, b[:, c0:c1], out=out[:, c0:c1]), N)
    return out

"""The matrix products alone of numpy_conv's forward and backward, for the benchmarks' GEMM share.

Each probe runs the very GEMMs the convolution runs for a layer (same shapes, layout, runs of images,
batch slices and threads) on random arrays, with none of the copies around them.
"""

import numpy as np

from xpnet.backends import numpy_conv as nc
from xpnet.backends.shapes import out_size


def gemm_probe(x_shape, W_shape, stride, pad, split=None, dtype=np.float32):
    """``(forward, backward)``: zero-argument callables doing the layer's products on random arrays."""
    N, C, H, Wd = x_shape
    FN, _, KH, KW = W_shape
    OH, OW = out_size(H, Wd, KH, KW, stride, pad)
    K, P, run = C * KH * KW, OH * OW, nc._runner(split)
    rng = np.random.default_rng(0)
    Wc, d = rng.random((FN, K), dtype), rng.random((N, FN, P) if K < nc.THIN else (FN, N * P), dtype)
    col = rng.random((N, K, P) if K < nc.THIN else (K, N * P), dtype)
    forward = _forward(Wc, col, N, split)
    if K < nc.THIN:
        dcol = np.empty((N, K, P), dtype)

        def bwd(k, n0, n1):
            np.matmul(d[n0:n1], col[n0:n1].transpose(0, 2, 1)).sum(axis=0)
            np.matmul(Wc.T, d[n0:n1], out=dcol[n0:n1])

        return forward, lambda: run(bwd, N)
    full = nc._dx_by_full_conv(W_shape, stride, pad)
    if full:  # dx is the inference-mode forward pass of the flipped layer over dout: GEMMs in runs of images
        K2, P2 = FN * KH * KW, H * Wd
        dx_forward = _forward(rng.random((C, K2), dtype), rng.random((K2, N * P2), dtype), N, split, runs=True)
    dcol = {}

    def bwd(k, n0, n1):
        d[:, n0 * P : n1 * P] @ col[:, n0 * P : n1 * P].T
        for a, z in [] if full else nc._chunks(n0, n1, K * P * np.dtype(dtype).itemsize):
            if (k, z - a) not in dcol:
                dcol[k, z - a] = np.empty((K, (z - a) * P), dtype)
            np.matmul(Wc.T, d[:, a * P : z * P], out=dcol[k, z - a])

    def backward():
        run(bwd, N)
        if full:
            dx_forward()

    return forward, backward


def _forward(Wc, col, N, split, runs=False):
    """The forward GEMMs: one per image (col (N, K, P)) or per batch slice (col (K, N*P)); ``runs``:
    per L3-sized run of images in each slice, as numpy_conv.forward with keep=False."""
    run = nc._runner(split)
    if col.ndim == 3:
        out = np.empty((N, Wc.shape[0], col.shape[2]), col.dtype)
        return lambda: run(lambda k, n0, n1: np.matmul(Wc, col[n0:n1], out=out[n0:n1]), N)
    K, P = Wc.shape[1], col.shape[1] // N
    out = np.empty((Wc.shape[0], N * P), col.dtype)

    def part(k, n0, n1):
        for a, z in nc._chunks(n0, n1, K * P * col.itemsize) if runs else [(n0, n1)]:
            np.matmul(Wc, col[:, a * P : z * P], out=out[:, a * P : z * P])

    return lambda: run(part, N)

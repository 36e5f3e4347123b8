"""Tried and dropped (issue 6): Winograd F(2x2, 3x3) convolution forward in NumPy vs the backend's im2col.

Winograd cuts the multiplies of a 3x3 convolution 2.25x, but in NumPy its input and output transforms
are ~30 element-wise passes over arrays 4x the input, and the 16 batched GEMMs have the tiny inner
dimension C. Run from a checkout (one thread, half a batch of 100, DeepConvNet's conv shapes):

    OPENBLAS_NUM_THREADS=1 python benchmarks/prototypes/winograd_f23.py

Output of the run reported in issue 6: benchmarks/results/issue6/session3/winograd_f23_prototype.txt.
"""

import time

import numpy as np

from xpnet.backends.numpy_conv_plan import plan_for

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)  # filter transform


def _rows(src, out, axis_slices):
    """B^T applied along one axis: out[0..3] from the four strided views of src (d0 - d2, d1 + d2, ...)."""
    d0, d1, d2, d3 = axis_slices(src)
    np.subtract(d0, d2, out=out[0])
    np.add(d1, d2, out=out[1])
    np.subtract(d2, d1, out=out[2])
    np.subtract(d1, d3, out=out[3])


def winograd_forward(x, W, b, pad, bufs):
    """3x3, stride 1 convolution of x (N, C, H, W) in channel-major memory; returns (N, FN, OH, OW)."""
    N, C, H, Wd = x.shape
    FN = W.shape[0]
    OH, OW = H + 2 * pad - 2, Wd + 2 * pad - 2
    TH, TW = -(-OH // 2), -(-OW // 2)
    if "xpad" not in bufs:
        bufs["xpad"] = np.zeros((C, N, 2 * TH + 2, 2 * TW + 2), x.dtype)
        bufs["V"] = np.empty((4, 4, C, N, TH, TW), x.dtype)
        bufs["r"] = np.empty((4, C, N, TH, 2 * TW + 2), x.dtype)
    X, V, r = bufs["xpad"], bufs["V"], bufs["r"]
    X[:, :, pad : pad + H, pad : pad + Wd] = x.transpose(1, 0, 2, 3)
    _rows(X, r, lambda a: [a[:, :, i : i + 2 * TH - 1 : 2] for i in range(4)])
    for i in range(4):
        _rows(r[i], V[i], lambda a: [a[..., j : j + 2 * TW - 1 : 2] for j in range(4)])
    U = np.einsum("ik,fckl,jl->ijfc", G, W, G).astype(x.dtype).reshape(16, FN, C)
    M = np.matmul(U, V.reshape(16, C, N * TH * TW)).reshape(4, 4, FN, N, TH, TW)
    s = np.empty((2, 4, FN, N, TH, TW), x.dtype)  # A^T along rows: m0 + m1 + m2, m1 - m2 - m3
    for j in range(4):
        np.add(M[0, j], M[1, j], out=s[0, j])
        s[0, j] += M[2, j]
        np.subtract(M[1, j], M[2, j], out=s[1, j])
        s[1, j] -= M[3, j]
    out = np.empty((FN, N, 2 * TH, 2 * TW), x.dtype)
    for i in range(2):  # then along columns, straight into the output's even/odd columns
        even, odd = out[:, :, i::2, 0::2], out[:, :, i::2, 1::2]
        np.add(s[i, 0], s[i, 1], out=even)
        even += s[i, 2]
        np.subtract(s[i, 1], s[i, 2], out=odd)
        odd -= s[i, 3]
    out += b.reshape(FN, 1, 1, 1)
    return out[:, :, :OH, :OW].transpose(1, 0, 2, 3)


def main():
    rng = np.random.default_rng(0)
    for C, S, FN, p in [(16, 28, 16, 1), (16, 14, 32, 1), (32, 14, 32, 2), (32, 8, 64, 1), (64, 8, 64, 1)]:
        x = rng.standard_normal((C, 50, S, S)).astype(np.float32).transpose(1, 0, 2, 3)
        W = rng.standard_normal((FN, C, 3, 3)).astype(np.float32) * 0.1
        b = rng.standard_normal(FN).astype(np.float32)
        ws, bufs = {}, {}
        conv = plan_for(ws, x, W, (1, 1), (p, p))
        err = np.max(np.abs(conv.forward(x, W, b)[0] - winograd_forward(x, W, b, p, bufs)))
        im2col, winograd = [], []
        for _ in range(21):
            t0 = time.perf_counter()
            conv.forward(x, W, b)
            t1 = time.perf_counter()
            winograd_forward(x, W, b, p, bufs)
            im2col.append(t1 - t0)
            winograd.append(time.perf_counter() - t1)
        print(f"{C}x{S}x{S} -> {FN}, pad {p}: im2col {1e3 * np.median(im2col):.2f} ms, "
              f"Winograd F(2x2,3x3) {1e3 * np.median(winograd):.2f} ms, max |difference| {err:.1e}")


if __name__ == "__main__":
    main()

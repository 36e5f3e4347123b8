"""Tried and dropped (issue 23): Winograd F(2x2, 3x3) forward, numba transforms + 16 batched OpenBLAS GEMMs.

The input and output transforms are compiled (numba, prange over the batch, fastmath, on-disk cache),
which removes the NumPy prototype's (winograd_f23.py) memory passes; the 16 products of the transformed
domain still go to OpenBLAS, with the tiny inner dimension C. Compared per DeepConvNet layer against the
NumPy im2col plan (inference forward), alternating calls in one process, medians. Run from a checkout
with numba installed:

    python benchmarks/prototypes/winograd_f23_numba.py 100

Output of the run reported in issue 23: benchmarks/results/issue23/winograd_f23_numba_prototype.txt.
"""
import sys
import time

import numpy as np

t0 = time.perf_counter()
import numba as nb  # noqa: E402

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64)


@nb.njit(inline="always")
def _row(x, n, c, h, w0, H, W):
    """Input row h, columns w0..w0+3 (zero outside the image: the padding is never copied)."""
    if h < 0 or h >= H:
        return 0.0, 0.0, 0.0, 0.0
    return (x[n, c, h, w0] if 0 <= w0 < W else 0.0, x[n, c, h, w0 + 1] if 0 <= w0 + 1 < W else 0.0,
            x[n, c, h, w0 + 2] if 0 <= w0 + 2 < W else 0.0, x[n, c, h, w0 + 3] if 0 <= w0 + 3 < W else 0.0)


@nb.njit(inline="always")
def _bt(a, b):
    """One B^T row combination applied to two 4-vectors: returns the four B^T-by-columns results."""
    return a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]


@nb.njit(inline="always")
def _store(V, k0, c, col, t):
    """The row ``t`` of B^T d times B into V[k0..k0+3, c, col]."""
    V[k0, c, col] = t[0] - t[2]
    V[k0 + 1, c, col] = t[1] + t[2]
    V[k0 + 2, c, col] = t[2] - t[1]
    V[k0 + 3, c, col] = t[1] - t[3]


@nb.njit(parallel=True, fastmath=True, cache=True)
def input_transform(x, V, pad, TH, TW):
    """V (16, C, T) = B^T d B of every 4x4 input tile d (stride 2), T = N * TH * TW tiles."""
    N, C, H, W = x.shape
    for nt in nb.prange(N * TH):
        n, th = nt // TH, nt % TH
        h0 = 2 * th - pad
        for c in range(C):
            for tw in range(TW):
                w0, col = 2 * tw - pad, (n * TH + th) * TW + tw
                d0, d1 = _row(x, n, c, h0, w0, H, W), _row(x, n, c, h0 + 1, w0, H, W)
                d2, d3 = _row(x, n, c, h0 + 2, w0, H, W), _row(x, n, c, h0 + 3, w0, H, W)
                _store(V, 0, c, col, _bt(d0, d2))
                _store(V, 4, c, col, (d1[0] + d2[0], d1[1] + d2[1], d1[2] + d2[2], d1[3] + d2[3]))
                _store(V, 8, c, col, _bt(d2, d1))
                _store(V, 12, c, col, _bt(d1, d3))


@nb.njit(parallel=True, fastmath=True, cache=True)
def output_transform(M, b, y, TH, TW):
    FN, N, OH, OW = y.shape  # channel-major output, as the im2col plan's
    for fn_n in nb.prange(FN * N):
        f, n = fn_n // N, fn_n % N
        for th in range(TH):
            for tw in range(TW):
                col = (n * TH + th) * TW + tw
                # A^T m: rows 0 and 1 over the 4 columns
                a0 = M[0, f, col] + M[4, f, col] + M[8, f, col]
                a1 = M[1, f, col] + M[5, f, col] + M[9, f, col]
                a2 = M[2, f, col] + M[6, f, col] + M[10, f, col]
                a3 = M[3, f, col] + M[7, f, col] + M[11, f, col]
                c0 = M[4, f, col] - M[8, f, col] - M[12, f, col]
                c1 = M[5, f, col] - M[9, f, col] - M[13, f, col]
                c2 = M[6, f, col] - M[10, f, col] - M[14, f, col]
                c3 = M[7, f, col] - M[11, f, col] - M[15, f, col]
                oh, ow = 2 * th, 2 * tw
                y[f, n, oh, ow] = a0 + a1 + a2 + b[f]
                if ow + 1 < OW:
                    y[f, n, oh, ow + 1] = a1 - a2 - a3 + b[f]
                if oh + 1 < OH:
                    y[f, n, oh + 1, ow] = c0 + c1 + c2 + b[f]
                    if ow + 1 < OW:
                        y[f, n, oh + 1, ow + 1] = c1 - c2 - c3 + b[f]


def filter_transform(W):
    U = np.einsum("ij,fcjk,lk->ilfc", G, W.astype(np.float64), G)  # (4, 4, FN, C)
    return U.reshape(16, *W.shape[:2]).astype(W.dtype)


def winograd_forward(x, W, b, pad, bufs):
    N, C, H, Wd = x.shape
    FN = W.shape[0]
    OH, OW = H + 2 * pad - 2, Wd + 2 * pad - 2
    TH, TW = -(-OH // 2), -(-OW // 2)
    T = N * TH * TW
    if "V" not in bufs:
        bufs["V"] = np.empty((16, C, T), x.dtype)
        bufs["M"] = np.empty((16, FN, T), x.dtype)
    V, M = bufs["V"], bufs["M"]
    input_transform(x, V, pad, TH, TW)
    np.matmul(filter_transform(W), V, out=M)
    y = np.empty((FN, N, OH, OW), x.dtype)
    output_transform(M, b, y, TH, TW)
    return y.transpose(1, 0, 2, 3)


LAYERS = [("conv1", 1, 16, 28, 1), ("conv2", 16, 16, 28, 1), ("conv3", 16, 32, 14, 1), ("conv4", 32, 32, 14, 2),
          ("conv5", 32, 64, 8, 1), ("conv6", 64, 64, 8, 1)]


def main(batch):
    from xpnet import backends
    from xpnet.backends.numpy_conv_plan import plan_for

    split = backends.get("numpy").splitter
    rng = np.random.default_rng(0)
    first = None
    print(f"batch {batch}; numba {nb.__version__}, threads {nb.get_num_threads()}, "
          f"import {time.perf_counter() - t0:.2f} s")
    for name, C, FN, H, pad in LAYERS:
        x = rng.standard_normal((batch, C, H, H)).astype(np.float32)
        W = (rng.standard_normal((FN, C, 3, 3)) * 0.1).astype(np.float32)
        b = rng.standard_normal(FN).astype(np.float32)
        bufs, ws = {}, {}
        s = time.perf_counter()
        got = winograd_forward(x, W, b, pad, bufs)
        if first is None:
            first = time.perf_counter() - s
        plan = plan_for(ws, x, W, (1, 1), (pad, pad), split)
        want = plan.forward(x, W, b, keep=False)[0]
        err = float(np.abs(got - want).max() / np.abs(want).max())
        tw, ti = [], []
        for _ in range(15):
            s = time.perf_counter()
            winograd_forward(x, W, b, pad, bufs)
            tw.append(time.perf_counter() - s)
            s = time.perf_counter()
            plan.forward(x, W, b, keep=False)
            ti.append(time.perf_counter() - s)
        gf = 2 * batch * FN * got.shape[2] * got.shape[3] * C * 9 / 1e9
        mw, mi = np.median(tw) * 1e3, np.median(ti) * 1e3
        print(f"{name} {C}->{FN} {H}x{H} pad {pad}: winograd {mw:.2f} ms ({gf / mw * 1e3:.0f} eff GFLOP/s), "
              f"im2col plan {mi:.2f} ms ({gf / mi * 1e3:.0f}); im2col/winograd {mi / mw:.2f}x; max rel err {err:.1e}")
    print(f"first winograd call (JIT or cache load): {first:.2f} s")


def parts(batch=100, C=16, FN=16, H=28, pad=1, reps=10):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, C, H, H)).astype(np.float32)
    W = rng.standard_normal((FN, C, 3, 3)).astype(np.float32)
    b = np.zeros(FN, np.float32)
    OH = H + 2 * pad - 2
    TH = TW = -(-OH // 2)
    T = batch * TH * TW
    V, M = np.empty((16, C, T), np.float32), np.empty((16, FN, T), np.float32)
    U = filter_transform(W)
    y = np.empty((FN, batch, OH, OH), np.float32)
    winograd_forward(x, W, b, pad, {})
    for label, fn in [("input", lambda: input_transform(x, V, pad, TH, TW)), ("gemm", lambda: np.matmul(U, V, out=M)),
                      ("output", lambda: output_transform(M, b, y, TH, TW))]:
        ts = []
        for _ in range(reps):
            s = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - s)
        print(f"  {label}: {np.median(ts) * 1e3:.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    print("conv2's three stages alone:")
    parts()

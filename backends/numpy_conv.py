"""Convolution on the CPU: im2col as KH*KW strided copies of whole rows, then BLAS GEMMs.

Two column layouts, chosen per layer by the depth of one column, K = C*KH*KW:

- ``gemm`` (K >= THIN): col (K, N*OH*OW), so each product is ONE large GEMM that OpenBLAS runs
  near its peak on both cores. The result comes out in (FN, N, OH, OW) memory order and is returned
  as an NCHW *view*: ReLU and pooling keep that order, so the next layer's (C, N, H, W) transpose
  costs nothing.
- ``batched`` (K < THIN, e.g. the first layer's 1x3x3): col (N, K, OH*OW) and one GEMM per image; a
  single (16 x 9) @ (9 x 78400) product is starved by its tiny K and runs 3x slower.

Measured on the 2-core dev machine, batch 100, DeepConvNet's conv shapes (forward + backward ms,
batched -> gemm): 1x3x3: 2.0 -> 3.7; 16x3x3 at 28x28: 35.0 -> 25.6; 32x3x3 at 14x14: 22.4 -> 16.6;
64x3x3 at 8x8: 28.5 -> 19.6.

``ws`` is a dict the calling layer owns: the column buffers live there between steps, because
fresh 10-100 MB arrays cost more in page faults than the copies themselves.
"""

import numpy as np

THIN = 32


def _acc(a):
    """float32 for float16 arrays: sums over the batch accumulate there (see xpnet.precision)."""
    return np.float32 if a.dtype.itemsize < 4 else a.dtype


def _out_size(H, Wd, KH, KW, stride, pad):
    return (H + 2 * pad[0] - KH) // stride[0] + 1, (Wd + 2 * pad[1] - KW) // stride[1] + 1


def _buffer(ws, key, shape, dtype):
    """A reusable scratch array from the caller's workspace dict (fresh when there is none)."""
    if ws is None:
        return np.empty(shape, dtype)
    buf = ws.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = ws[key] = np.empty(shape, dtype)
    return buf


def _pad(a, PH, PW):
    """Zero-pad the last two axes."""
    if not (PH or PW):
        return a
    return np.pad(a, ((0, 0), (0, 0), (PH, PH), (PW, PW)))


def _gather(src, tap, KH, KW, stride, OH, OW):
    """tap(kh, kw)[...] = the (kh, kw) strided window of padded ``src`` (spatial axes last)."""
    SH, SW = stride
    for kh in range(KH):
        for kw in range(KW):
            tap(kh, kw)[...] = src[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW]


def _inside(k, S, P, O, size):
    """For tap k: the input slice it touches and the output slice that lands inside (not in padding)."""
    o0 = max(0, -(-(P - k) // S))  # first output index whose input o*S - P + k is >= 0
    o1 = min(O, (size - 1 + P - k) // S + 1)  # one past the last whose input is < size
    if o1 <= o0:
        return slice(0, 0), slice(0, 0)
    i0 = o0 * S - P + k
    return slice(i0, i0 + S * (o1 - o0 - 1) + 1, S), slice(o0, o1)


def _scatter(img, tap, KH, KW, stride, pad, OH, OW):
    """img[..., h, w] += every tap's gradient that lands inside the image, in (kh, kw) order."""
    H, Wd = img.shape[-2:]
    for kh in range(KH):
        rows, orows = _inside(kh, stride[0], pad[0], OH, H)
        for kw in range(KW):
            cols, ocols = _inside(kw, stride[1], pad[1], OW, Wd)
            img[:, :, rows, cols] += tap(kh, kw)[:, :, orows, ocols]
    return img


def forward(x, W, b, stride, pad, ws=None, split=None):
    """Returns ``(out (N, FN, OH, OW), cache)``; ``split`` (a BatchSplitter) runs slices of the batch in threads."""
    N, C, H, Wd = x.shape
    FN, _, KH, KW = W.shape
    OH, OW = _out_size(H, Wd, KH, KW, stride, pad)
    Wc, run = W.reshape(FN, -1), _runner(split)
    if C * KH * KW < THIN:
        col = _buffer(ws, "col", (N, C, KH, KW, OH, OW), x.dtype)
        out = np.empty((N, FN, OH * OW), x.dtype)

        def batched(k, n0, n1):
            _gather(_pad(x[n0:n1], *pad), lambda kh, kw: col[n0:n1, :, kh, kw], KH, KW, stride, OH, OW)
            part = out[n0:n1]
            np.matmul(Wc, col[n0:n1].reshape(n1 - n0, C * KH * KW, OH * OW), out=part)
            part += b.reshape(1, FN, 1)

        run(batched, N)
        return out.reshape(N, FN, OH, OW), ("batched", col.reshape(N, C * KH * KW, OH * OW), x.shape)
    col = _buffer(ws, "col", (C, KH, KW, N, OH, OW), x.dtype)
    col2 = col.reshape(C * KH * KW, N * OH * OW)
    out = np.empty((FN, N * OH * OW), x.dtype)
    xt = x.transpose(1, 0, 2, 3)

    def gemm(k, n0, n1):
        _gather(_pad(xt[:, n0:n1], *pad), lambda kh, kw: col[:, kh, kw, n0:n1], KH, KW, stride, OH, OW)
        cols = slice(n0 * OH * OW, n1 * OH * OW)
        part = out[:, cols]
        np.matmul(Wc, col2[:, cols], out=part)
        part += b.reshape(FN, 1)

    run(gemm, N)
    return out.reshape(FN, N, OH, OW).transpose(1, 0, 2, 3), ("gemm", col2, x.shape)


def backward(dout, cache, W, stride, pad, ws=None, split=None):
    """Returns ``(dx, dW, db)`` for :func:`forward`'s ``cache``."""
    layout, col, (N, C, H, Wd) = cache
    FN, _, KH, KW = W.shape
    OH, OW = _out_size(H, Wd, KH, KW, stride, pad)
    Wc, run, acc = W.reshape(FN, -1), _runner(split), _acc(dout)
    if layout == "batched":
        d = dout.reshape(N, FN, OH * OW)
        dcol = _buffer(ws, "dcol", (N, C * KH * KW, OH * OW), dout.dtype)
        dx = np.empty((N, C, H, Wd), dout.dtype)

        def batched(k, n0, n1):
            dW = np.matmul(d[n0:n1], col[n0:n1].transpose(0, 2, 1)).sum(axis=0, dtype=acc)
            np.matmul(Wc.T, d[n0:n1], out=dcol[n0:n1])
            taps = dcol[n0:n1].reshape(n1 - n0, C, KH, KW, OH, OW)
            part = dx[n0:n1]
            part[...] = 0
            _scatter(part, lambda kh, kw: taps[:, :, kh, kw], KH, KW, stride, pad, OH, OW)
            return dW, d[n0:n1].sum(axis=(0, 2), dtype=acc)

        dW, db = _sum_parts(run(batched, N), dout.dtype)
        return dx, dW.reshape(W.shape), db
    d = dout.transpose(1, 0, 2, 3).reshape(FN, N * OH * OW)  # free when dout kept (FN, N, ...) order
    dcol = _buffer(ws, "dcol", (C * KH * KW, N * OH * OW), dout.dtype)
    taps = dcol.reshape(C, KH, KW, N, OH, OW)
    dx = np.empty((C, N, H, Wd), dout.dtype)

    def gemm(k, n0, n1):
        cols = slice(n0 * OH * OW, n1 * OH * OW)
        dW = d[:, cols] @ col[:, cols].T
        np.matmul(Wc.T, d[:, cols], out=dcol[:, cols])
        part = dx[:, n0:n1]
        part[...] = 0
        _scatter(part, lambda kh, kw: taps[:, kh, kw, n0:n1], KH, KW, stride, pad, OH, OW)
        return dW, d[:, cols].sum(axis=1, dtype=acc)

    dW, db = _sum_parts(run(gemm, N), dout.dtype)
    return dx.transpose(1, 0, 2, 3), dW.reshape(W.shape), db


def _runner(split):
    """``run(fn, n)`` over slices of the batch: the splitter's threads, or one call in place."""
    if split is None:
        return lambda fn, n: [fn(0, 0, n)]
    return split.run


def _sum_parts(parts, dtype):
    """Sum each slice's ``(dW, db)`` partial sums (accumulated in float32 at least), cast to ``dtype``."""
    dW = sum((p[0] for p in parts[1:]), parts[0][0])
    db = sum((p[1] for p in parts[1:]), parts[0][1])
    return dW.astype(dtype, copy=False), db.astype(dtype, copy=False)

"""Convolution on the CPU: im2col as KH*KW strided copies of whole rows, then BLAS GEMMs.

Two column layouts, chosen per layer by the depth of one column, K = C*KH*KW:

- ``gemm`` (K >= THIN): col (K, N*OH*OW), so each product is ONE large GEMM that OpenBLAS runs
  near its peak on both cores. The result comes out in (FN, N, OH, OW) memory order and is returned
  as an NCHW *view*: ReLU and pooling keep that order, so the next layer's (C, N, H, W) transpose
  costs nothing.
- ``batched`` (K < THIN, e.g. the first layer's 1x3x3): col (N, K, OH*OW) and one GEMM per image; a
  single (16 x 9) @ (9 x 78400) product is starved by its tiny K and runs 3x slower.

The padding is never copied: the column buffer is created zeroed and each tap writes only the outputs
whose input lies inside the image (13% off the forward pass against np.pad + full taps). Backward, dx is
either dcol = W^T @ dout scattered back by KH*KW strided adds in L3-sized runs of images, or, for
stride-1 layers with FN <= C, the full convolution of dout with the flipped filters (see
_dx_by_full_conv), whichever writes less.

THIN comes from timing both layouts on DeepConvNet's conv shapes (batch 100, 2 cores, forward +
backward ms, batched vs gemm): 1x3x3: 2.0 vs 3.7; 16x3x3 at 28x28: 35.0 vs 25.6; 32x3x3 at 14x14:
22.4 vs 16.6; 64x3x3 at 8x8: 28.5 vs 19.6.

``ws`` is a dict the calling layer owns: the column buffers live there between steps, because
fresh 10-100 MB arrays cost more in page faults than the copies themselves.
"""

import numpy as np

from xpnet.backends.shapes import out_size

THIN = 32
CHUNK_BYTES = 1 << 22  # backward: dcol is made and scattered in runs of images this big (L3-resident)


def _acc(a):
    """float32 for float16 arrays: sums over the batch accumulate there (see xpnet.precision)."""
    return np.float32 if a.dtype.itemsize < 4 else a.dtype


def _buffer(ws, key, shape, dtype, new=np.empty):
    """A reusable scratch array from the caller's workspace dict (fresh when there is none)."""
    if ws is None:
        return new(shape, dtype)
    buf = ws.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = ws[key] = new(shape, dtype)
    return buf


def _gather(src, tap, KH, KW, stride, pad, OH, OW):
    """tap(kh, kw)[..., oh, ow] = src[..., h, w] for every output whose input (h, w) is inside the image.

    Entries that fall in the padding are never written: the column buffer is created zeroed and a layer's
    geometry never changes, so they stay zero and the input is never padded (no np.pad copy per call).
    """
    H, Wd = src.shape[-2:]
    for kh in range(KH):
        rows, orows = _inside(kh, stride[0], pad[0], OH, H)
        for kw in range(KW):
            cols, ocols = _inside(kw, stride[1], pad[1], OW, Wd)
            tap(kh, kw)[..., orows, ocols] = src[:, :, rows, cols]


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


def forward(x, W, b, stride, pad, ws=None, split=None, keep=True):
    """Returns ``(out (N, FN, OH, OW), cache)``; ``split`` (a BatchSplitter) runs slices of the batch in threads.

    ``b`` may be None (no bias: the backward pass's full convolution for dx). ``keep=False`` (inference):
    each thread makes and uses the columns in L3-sized runs of images instead of one buffer for the
    batch (the runs stay in cache, a batch-sized buffer does not); the cache then holds no columns and
    a backward pass rebuilds them.
    """
    N, C, H, Wd = x.shape
    FN, _, KH, KW = W.shape
    OH, OW = out_size(H, Wd, KH, KW, stride, pad)
    K, P = C * KH * KW, OH * OW
    layout, Wc = "batched" if K < THIN else "gemm", W.reshape(FN, -1)
    out = np.empty((N, FN, P) if layout == "batched" else (FN, N * P), x.dtype)
    col = _buffer(ws, ("col", stride, pad), _col_shape(layout, x.shape, W.shape, N, OH, OW), x.dtype,
                  np.zeros) if keep else None

    def part(k, n0, n1):
        for a, z in [(n0, n1)] if keep else _chunks(n0, n1, K * P * x.itemsize):
            dst = col if keep else _buffer(ws, ("run", k, z - a, stride, pad),
                                           _col_shape(layout, x.shape, W.shape, z - a, OH, OW), x.dtype, np.zeros)
            off = 0 if keep else a
            _im2col(layout, x, dst, a, z, off, stride, pad)
            _product(layout, Wc, dst, out, a, z, off, b)

    _runner(split)(part, N)
    y = out.reshape(N, FN, OH, OW) if layout == "batched" else out.reshape(FN, N, OH, OW).transpose(1, 0, 2, 3)
    return y, (layout, col, x.shape, None if keep else x)  # x only where backward must rebuild the columns


def _col_shape(layout, x_shape, W_shape, m, OH, OW):
    """Column buffer for ``m`` images: (m, C, KH, KW, OH, OW) batched, (C, KH, KW, m, OH, OW) gemm."""
    C, (KH, KW) = x_shape[1], W_shape[2:]
    return (m, C, KH, KW, OH, OW) if layout == "batched" else (C, KH, KW, m, OH, OW)


def _im2col(layout, x, col, n0, n1, off, stride, pad):
    """Columns of images n0..n1 of ``x`` into ``col``, whose image axis starts at image ``off``."""
    if layout == "batched":
        _, _, KH, KW, OH, OW = col.shape
        _gather(x[n0:n1], lambda kh, kw: col[n0 - off : n1 - off, :, kh, kw], KH, KW, stride, pad, OH, OW)
    else:
        _, KH, KW, _, OH, OW = col.shape
        _gather(x.transpose(1, 0, 2, 3)[:, n0:n1], lambda kh, kw: col[:, kh, kw, n0 - off : n1 - off], KH, KW,
                stride, pad, OH, OW)


def _product(layout, Wc, col, out, n0, n1, off, b):
    """``out`` for images n0..n1 = Wc @ their columns (``col``'s image axis starts at ``off``) + b."""
    (FN, K), P = Wc.shape, col.shape[-1] * col.shape[-2]
    if layout == "batched":
        part = out[n0:n1]
        np.matmul(Wc, col[n0 - off : n1 - off].reshape(n1 - n0, K, P), out=part)
    else:
        part = out[:, n0 * P : n1 * P]
        np.matmul(Wc, col.reshape(K, -1)[:, (n0 - off) * P : (n1 - off) * P], out=part)
    if b is not None:
        part += b.reshape((1, FN, 1) if layout == "batched" else (FN, 1))


def backward(dout, cache, W, stride, pad, ws=None, split=None):
    """Returns ``(dx, dW, db)`` for :func:`forward`'s ``cache``."""
    layout, col, x_shape, x = cache
    N, C, H, Wd = x_shape
    FN, _, KH, KW = W.shape
    OH, OW = out_size(H, Wd, KH, KW, stride, pad)
    P, run, acc = OH * OW, _runner(split), _acc(dout)
    if col is None:  # the forward pass ran with keep=False: make the columns now
        col = _buffer(ws, ("col", stride, pad), _col_shape(layout, x_shape, W.shape, N, OH, OW), x.dtype, np.zeros)
        run(lambda k, n0, n1: _im2col(layout, x, col, n0, n1, 0, stride, pad), N)
    if layout == "batched":
        return _backward_batched(dout, col.reshape(N, C * KH * KW, P), W, stride, pad, x_shape, ws, split)
    col = col.reshape(C * KH * KW, N * P)
    d = dout.transpose(1, 0, 2, 3).reshape(FN, N * P)  # free when dout kept (FN, N, ...) order
    full = _dx_by_full_conv(W.shape, stride, pad)
    dx = None if full else np.empty((C, N, H, Wd), dout.dtype)

    def gemm(k, n0, n1):
        cols = slice(n0 * P, n1 * P)
        if not full:
            _dx_by_col2im(dout, d, W, stride, pad, ws, k, n0, n1, dx)
        return d[:, cols] @ col[:, cols].T, d[:, cols].sum(axis=1, dtype=acc)

    dW, db = _sum_parts(run(gemm, N), dout.dtype)
    if full:
        flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, FN, KH, KW)
        sub = None if ws is None else ws.setdefault("dx", {})
        return forward(dout, flipped, None, (1, 1), (KH - 1 - pad[0], KW - 1 - pad[1]), sub, split, keep=False)[0], \
            dW.reshape(W.shape), db
    return dx.transpose(1, 0, 2, 3), dW.reshape(W.shape), db


def _dx_by_full_conv(W_shape, stride, pad):
    """dx as the full convolution of dout with the flipped filters (an im2col of dout + GEMM), not dcol + col2im.

    Both write a 9x-expanded array, but the full convolution's GEMM has the fat inner dimension FN*KH*KW
    and writes dx once instead of KH*KW read-modify-write passes. It writes FN*KH*KW rows where col2im's
    dcol has C*KH*KW, so it pays only when FN <= C (timed on DeepConvNet: faster for conv2/4/6, slower
    for conv3/5, where FN = 2C). Stride 1 only.
    """
    FN, C, KH, KW = W_shape
    return stride == (1, 1) and FN <= C and FN * KH * KW >= THIN and pad[0] < KH and pad[1] < KW


def _dx_by_col2im(dout, d, W, stride, pad, ws, k, n0, n1, dx):
    """dx[:, n0:n1] (channel-major) by dcol = W^T @ dout and KH*KW strided adds, in L3-sized runs of images."""
    FN, C, KH, KW = W.shape
    OH, OW = dout.shape[2:]
    P, Wc = OH * OW, W.reshape(FN, -1)
    for a, z in _chunks(n0, n1, C * KH * KW * P * dout.itemsize):
        dcol = _buffer(ws, ("dcol", k, z - a), (C, KH, KW, z - a, OH, OW), dout.dtype)
        np.matmul(Wc.T, d[:, a * P : z * P], out=dcol.reshape(C * KH * KW, -1))
        part = dx[:, a:z]
        part[...] = 0
        _scatter(part, lambda kh, kw, taps=dcol: taps[:, kh, kw], KH, KW, stride, pad, OH, OW)


def _backward_batched(dout, col, W, stride, pad, x_shape, ws, split):
    """:func:`backward` for the ``batched`` layout (one GEMM per image)."""
    N, C, H, Wd = x_shape
    FN, _, KH, KW = W.shape
    OH, OW = out_size(H, Wd, KH, KW, stride, pad)
    Wc, acc = W.reshape(FN, -1), _acc(dout)
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

    dW, db = _sum_parts(_runner(split)(batched, N), dout.dtype)
    return dx, dW.reshape(W.shape), db


def _chunks(n0, n1, per_image):
    """Images n0..n1 in nearly equal runs of at most CHUNK_BYTES // per_image (at least one image)."""
    m = max(1, CHUNK_BYTES // per_image)
    k = -(-(n1 - n0) // m)
    return [(n0 + (n1 - n0) * i // k, n0 + (n1 - n0) * (i + 1) // k) for i in range(k)]


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

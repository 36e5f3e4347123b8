"""Convolution on the CPU, the pieces: im2col as KH*KW strided copies of whole rows, the two column layouts.

A layer's choices among these pieces are made once per shape by :class:`numpy_conv_plan.ConvPlan`.

Two column layouts, chosen by the depth of one column, K = C*KH*KW:

- :class:`GemmLayout` (K >= THIN): col (K, N*OH*OW), so each product is ONE large GEMM that OpenBLAS
  runs near its peak. The result comes out in (FN, N, OH, OW) memory order and is returned as an NCHW
  *view*: ReLU and pooling keep that order, so the next layer's (C, N, H, W) transpose costs nothing.
- :class:`BatchedLayout` (K < THIN, e.g. the first layer's 1x3x3): col (N, K, OH*OW) and one GEMM per
  image; a single (16 x 9) @ (9 x 78400) product is starved by its tiny K and runs 3x slower.

The padding is never copied: column buffers are created zeroed and each tap writes only the outputs
whose input lies inside the image (13% off the forward pass against np.pad + full taps).

THIN comes from timing both layouts on DeepConvNet's conv shapes (batch 100, 2 cores, forward +
backward ms, batched vs gemm): 1x3x3: 2.0 vs 3.7; 16x3x3 at 28x28: 35.0 vs 25.6; 32x3x3 at 14x14:
22.4 vs 16.6; 64x3x3 at 8x8: 28.5 vs 19.6.
"""

import numpy as np

THIN = 32
CHUNK_BYTES = 1 << 22  # columns are made in runs of images this big where a batch's would leave the L3


def acc_dtype(a):
    """float32 for float16 arrays: sums over the batch accumulate there (see xpnet.precision)."""
    return np.float32 if a.dtype.itemsize < 4 else a.dtype


def chunks(n0, n1, per_image):
    """Images n0..n1 in nearly equal runs of at most CHUNK_BYTES // per_image (at least one image)."""
    m = max(1, CHUNK_BYTES // per_image)
    k = -(-(n1 - n0) // m)
    return [(n0 + (n1 - n0) * i // k, n0 + (n1 - n0) * (i + 1) // k) for i in range(k)]


def _inside(k, S, P, O, size):
    """For tap k: the input slice it touches and the output slice that lands inside (not in padding)."""
    o0 = max(0, -(-(P - k) // S))  # first output index whose input o*S - P + k is >= 0
    o1 = min(O, (size - 1 + P - k) // S + 1)  # one past the last whose input is < size
    if o1 <= o0:
        return slice(0, 0), slice(0, 0)
    i0 = o0 * S - P + k
    return slice(i0, i0 + S * (o1 - o0 - 1) + 1, S), slice(o0, o1)


def gather(src, tap, g):
    """tap(kh, kw)[..., oh, ow] = src[..., h, w] for every output whose input (h, w) is inside the image.

    Entries that fall in the padding are never written: the column buffer is created zeroed and a plan's
    geometry never changes, so they stay zero and the input is never padded (no np.pad copy per call).
    """
    H, Wd = src.shape[-2:]
    for kh in range(g.KH):
        rows, orows = _inside(kh, g.stride[0], g.pad[0], g.OH, H)
        for kw in range(g.KW):
            cols, ocols = _inside(kw, g.stride[1], g.pad[1], g.OW, Wd)
            tap(kh, kw)[..., orows, ocols] = src[:, :, rows, cols]


def scatter(img, tap, g):
    """img[..., h, w] = the sum of every tap's gradient that lands there, in (kh, kw) order."""
    H, Wd = img.shape[-2:]
    img[...] = 0
    for kh in range(g.KH):
        rows, orows = _inside(kh, g.stride[0], g.pad[0], g.OH, H)
        for kw in range(g.KW):
            cols, ocols = _inside(kw, g.stride[1], g.pad[1], g.OW, Wd)
            img[:, :, rows, cols] += tap(kh, kw)[:, :, orows, ocols]
    return img


class GemmLayout:
    """col (C, KH, KW, m, OH, OW): one GEMM per batch slice, output in (FN, N, OH, OW) memory order.

    Where one window covers the whole unpadded image (``whole``: a 7x7 layer on 7x7 maps, the first
    transposed convolution of DCGAN's generator), the columns are the images themselves: im2col and col2im
    are then one copy each instead of KH*KW strided ones.
    """

    def __init__(self, g):
        self.g = g
        self.whole = g.pad == (0, 0) and (g.KH, g.KW) == (g.H, g.W)

    def col_shape(self, m):
        g = self.g
        return (g.C, g.KH, g.KW, m, g.OH, g.OW)

    def out_buffer(self, dtype):
        return np.empty((self.g.FN, self.g.N * self.g.P), dtype)

    def output(self, out):
        g = self.g
        return out.reshape(g.FN, g.N, g.OH, g.OW).transpose(1, 0, 2, 3)

    def im2col(self, x, col, n0, n1, off):
        """Columns of images n0..n1 of ``x`` into ``col``, whose image axis starts at image ``off``."""
        if self.whole:
            self.as_images(col[:, :, :, n0 - off : n1 - off])[...] = self.dx_part(x, n0, n1)
        else:
            gather(self.dx_part(x, n0, n1), lambda kh, kw: col[:, kh, kw, n0 - off : n1 - off], self.g)

    def as_images(self, col):
        """Whole-image columns ``col`` (m images) viewed as the images, in :meth:`dx_part`'s order."""
        return col[..., 0, 0].transpose(0, 3, 1, 2)

    def product(self, Wc, col, out, n0, n1, off, b):
        """``out`` for images n0..n1 = Wc @ their columns (``col``'s image axis starts at ``off``) + b."""
        P = self.g.P
        part = out[:, n0 * P : n1 * P]
        np.matmul(Wc, col.reshape(self.g.K, -1)[:, (n0 - off) * P : (n1 - off) * P], out=part)
        if b is not None:
            part += b.reshape(-1, 1)

    def dout_matrix(self, dout):
        """dout as (FN, N*P): free when dout kept the forward's (FN, N, ...) memory order."""
        return dout.transpose(1, 0, 2, 3).reshape(self.g.FN, -1)

    def weight_grads(self, d, col, n0, n1, acc):
        """Images n0..n1's share of ``(dW (FN, K), db (FN,))``."""
        cols = slice(n0 * self.g.P, n1 * self.g.P)
        return np.matmul(d[:, cols], col.reshape(self.g.K, -1)[:, cols].T), d[:, cols].sum(axis=1, dtype=acc)

    def dcol(self, Wc, d, n0, n1, buf):
        """dcol (C, KH, KW, n1-n0, OH, OW) = Wc^T @ images n0..n1 of ``d``, into ``buf``."""
        P = self.g.P
        np.matmul(Wc.T, d[:, n0 * P : n1 * P], out=buf.reshape(self.g.K, -1))

    def col2im(self, buf, dx, n0, n1):
        """dx of images n0..n1 from their dcol ``buf``: each pixel the sum of the taps' gradients landing there."""
        img = self.dx_part(dx, n0, n1)
        if self.whole:
            img[...] = self.as_images(buf)
            return img
        return scatter(img, self.taps(buf), self.g)

    def taps(self, buf):
        return lambda kh, kw: buf[:, kh, kw]

    def dx_buffer(self, dtype):
        """dx in (C, N, H, W) memory order (as the forward's output), returned as an NCHW view."""
        g = self.g
        return np.empty((g.C, g.N, g.H, g.W), dtype).transpose(1, 0, 2, 3)

    def dx_part(self, dx, n0, n1):
        """Images n0..n1 of the NCHW array ``dx`` in this layout's order of axes."""
        return dx.transpose(1, 0, 2, 3)[:, n0:n1]


class BatchedLayout(GemmLayout):
    """col (m, C, KH, KW, OH, OW): one GEMM per image, for columns too thin for one large GEMM."""

    def col_shape(self, m):
        g = self.g
        return (m, g.C, g.KH, g.KW, g.OH, g.OW)

    def out_buffer(self, dtype):
        return np.empty((self.g.N, self.g.FN, self.g.P), dtype)

    def output(self, out):
        g = self.g
        return out.reshape(g.N, g.FN, g.OH, g.OW)

    def im2col(self, x, col, n0, n1, off):
        if self.whole:
            self.as_images(col[n0 - off : n1 - off])[...] = x[n0:n1]
        else:
            gather(x[n0:n1], lambda kh, kw: col[n0 - off : n1 - off, :, kh, kw], self.g)

    def as_images(self, col):
        return col[..., 0, 0]

    def product(self, Wc, col, out, n0, n1, off, b):
        g = self.g
        part = out[n0:n1]
        np.matmul(Wc, col[n0 - off : n1 - off].reshape(n1 - n0, g.K, g.P), out=part)
        if b is not None:
            part += b.reshape(1, -1, 1)

    def dout_matrix(self, dout):
        return dout.reshape(self.g.N, self.g.FN, self.g.P)

    def weight_grads(self, d, col, n0, n1, acc):
        cols = col.reshape(self.g.N, self.g.K, self.g.P)[n0:n1]
        return np.matmul(d[n0:n1], cols.transpose(0, 2, 1)).sum(axis=0, dtype=acc), \
            d[n0:n1].sum(axis=(0, 2), dtype=acc)

    def dcol(self, Wc, d, n0, n1, buf):
        np.matmul(Wc.T, d[n0:n1], out=buf.reshape(n1 - n0, self.g.K, self.g.P))

    def taps(self, buf):
        return lambda kh, kw: buf[:, :, kh, kw]

    def dx_buffer(self, dtype):
        g = self.g
        return np.empty((g.N, g.C, g.H, g.W), dtype)

    def dx_part(self, dx, n0, n1):
        return dx[n0:n1]

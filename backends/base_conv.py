"""The convolutions every backend has: the generic im2col + GEMM defaults (:class:`ConvolutionDefaults`, a
part of :class:`~xpnet.backends.base.Backend`), the fused ReLU / max pool around them, and ``store``."""

import collections
import contextlib

import numpy as np

from xpnet import precision
from xpnet.backends.shapes import out_size, transposed_length

Activated = collections.namedtuple("Activated", "inner mask")  # a convolution's cache with its fused ReLU's mask
Pooled = collections.namedtuple("Pooled", "inner cache shape window")  # ... with its fused max pool's


def store(out, *arrays):
    """``arrays``, each copied into its destination in ``out`` when one is given (same shape and dtype)."""
    if out is None:
        return arrays
    result = []
    for dest, a in zip(out, arrays, strict=True):
        if dest is None or dest is a:
            result.append(a)
        else:
            dest[...] = a
            result.append(dest)
    return tuple(result)



class ConvolutionDefaults:
    """Convolution, transposed convolution and their fused ReLU / max pool by the backend's own im2col,
    col2im, matmul, ReLU and pooling; a backend overrides what it runs better (see numpy_backend)."""

    # -- convolution -------------------------------------------------------------------------
    def conv2d_forward(self, x, W, b, stride, pad, ws=None, keep=True, relu=False, reuse=False, pool=None):
        """Convolution by im2col + one GEMM. Returns ``(out (N, FN, OH, OW), cache for backward)``.

        ``ws`` is a dict the calling layer owns; a backend may keep reusable buffers in it. ``keep=False``
        says no backward pass is expected (inference): a backend may then keep less and rebuild it in
        :meth:`conv2d_backward` if one comes after all. ``relu=True``: the output is ``max(conv, 0)`` (a
        ReLU fused after the bias) and :meth:`conv2d_backward` applies the ReLU's mask first.
        ``reuse=True``: the caller is done with the output of the previous call with this ``ws`` (see
        ``Layer.reuse_output``), so a backend may write this one into the same buffer. ``pool``: ``(KH, KW,
        stride, pad)`` of a max pool fused after the ReLU: the output is the pooled one.
        """
        N, _, H, Wd = x.shape
        FN, _, KH, KW = W.shape
        OH, OW = out_size(H, Wd, KH, KW, stride, pad)
        col = self.im2col(x, KH, KW, stride, pad)
        Wc = W.reshape(FN, -1)
        out = col @ Wc.T + b
        # Inference keeps x (alive anyway as the previous layer's output), not its KH*KW times larger columns.
        cache = (col, None, x.shape) if keep else (None, x, x.shape)
        return self._activated(out.reshape(N, OH, OW, FN).transpose(0, 3, 1, 2), cache, relu, pool)

    def _activated(self, out, cache, relu, pool=None):
        """``(out, cache)``, through a fused ReLU when ``relu`` (its mask joins the cache), then a fused max
        pool when ``pool`` is ``(KH, KW, stride, pad)`` (its cache joins too)."""
        if relu:
            out, mask = self.relu_forward(out)
            cache = Activated(cache, mask)
        if pool is None:
            return out, cache
        KH, KW, stride, pad = pool
        OH, OW = out_size(out.shape[2], out.shape[3], KH, KW, stride, pad)
        pooled, pcache = self.maxpool2d_forward(out, KH, KW, stride, pad, OH, OW)
        return pooled, Pooled(cache, pcache, out.shape, pool)

    def _deactivated(self, dout, cache):
        """``(dout, cache)`` before a fused max pool and ReLU: dout through their backward (new arrays), the
        convolution's own cache."""
        if isinstance(cache, Pooled):
            dout, cache = self.maxpool2d_backward(dout, cache.cache, cache.shape, *cache.window), cache.inner
        if isinstance(cache, Activated):
            return self.relu_backward(dout, cache.mask), cache.inner
        return dout, cache

    def conv2d_backward(self, dout, cache, W, stride, pad, ws=None, input_grad=True, out=None, reuse=False):
        """Gradients ``(dx, dW, db)`` of :meth:`conv2d_forward` given dL/dout (N, FN, OH, OW).

        ``input_grad=False``: dx is not needed (the network's first layer) and comes back None. ``out``:
        ``(dW, db)`` arrays to write the gradients into (None, or either None: new arrays). ``reuse``: as in
        :meth:`conv2d_forward`, for dx.
        """
        dout, cache = self._deactivated(dout, cache)
        col, x, x_shape = cache
        FN, _, KH, KW = W.shape
        if col is None:  # forward ran with keep=False: rebuild the columns from x
            col = self.im2col(x, KH, KW, stride, pad)
        d = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
        dW = (d.T @ col).reshape(W.shape)
        db = d.sum(axis=0, dtype=precision.compute_dtype(d.dtype)).astype(d.dtype, copy=False)
        dx = self.col2im(d @ W.reshape(FN, -1), x_shape, KH, KW, stride, pad) if input_grad else None
        return dx, *store(out, dW, db)

    def conv2d_transpose_forward(self, x, W, b, stride, pad, output_pad, ws=None):
        """Transposed convolution (the adjoint of :meth:`conv2d_forward` without its bias, plus ``b``) by one
        GEMM and :meth:`col2im`. Returns ``(out (N, FN, OH, OW), cache for backward)``.

        x (N, C, H, W); W (C, FN, KH, KW); b (FN,); OH = (H - 1) * SH - 2 * PH + KH + OPH for ``output_pad``
        (OPH, OPW), each below the stride. ``ws`` as in :meth:`conv2d_forward`.
        """
        N, C, H, Wd = x.shape
        _, FN, KH, KW = W.shape
        out_shape = (N, FN, *(transposed_length(n, k, s, p, o) for n, k, s, p, o in
                              zip((H, Wd), (KH, KW), stride, pad, output_pad)))
        # channels first on both sides of the GEMM: the columns come out as col2im reads them fastest
        xcolT = x.transpose(1, 0, 2, 3).reshape(C, N * H * Wd)
        col = self.matmul(W.reshape(C, -1).T, xcolT).T  # (N*H*W, FN*KH*KW)
        out = self.col2im(col, out_shape, KH, KW, stride, pad)
        out += b.reshape(1, -1, 1, 1)
        return out, (xcolT, x.shape)

    def conv2d_transpose_backward(self, dout, cache, W, stride, pad, ws=None, input_grad=True):
        """Gradients ``(dx (N, C, H, W), dW (C, FN, KH, KW), db (FN,))`` of :meth:`conv2d_transpose_forward`
        given dL/dout (N, FN, OH, OW), by :meth:`im2col` and two GEMMs. ``input_grad=False``: dx comes
        back None (not computed). ``dout`` is never written."""
        xcolT, (N, C, H, Wd) = cache
        KH, KW = W.shape[2:]
        dcol = self.im2col(dout, KH, KW, stride, pad)  # (N*H*W, FN*KH*KW)
        dW = self.matmul(xcolT, dcol).reshape(W.shape)
        db = dout.sum(axis=(0, 2, 3), dtype=precision.compute_dtype(dout.dtype)).astype(dout.dtype)
        if not input_grad:
            return None, dW, db
        dx = self.matmul(W.reshape(C, -1), dcol.T)  # (C, N*H*W)
        return dx.reshape(C, N, H, Wd).transpose(1, 0, 2, 3), dW, db

    def conv_gemm_probe(self, x_shape, W_shape, stride, pad):
        """``(forward, backward)`` callables running only the matrix products of this backend's conv for a
        layer of these shapes, on random float32 arrays (benchmarks time the GEMM share)."""
        N, C, H, Wd = x_shape
        FN, _, KH, KW = W_shape
        K, (OH, OW) = C * KH * KW, out_size(H, Wd, KH, KW, stride, pad)
        P = OH * OW
        rng = self.rng(1)
        W, col, d = (rng.random(shape, dtype=np.float32) for shape in ((FN, K), (N * P, K), (N * P, FN)))
        return (lambda: col @ W.T), (lambda: (d.T @ col, d @ W))

    def conv_stages(self):
        """Context manager yielding a dict that fills on exit with ``{stage: ms}`` of the convolutions run
        inside; empty for a backend that does not time its convolutions' stages (this one)."""
        return contextlib.nullcontext({})

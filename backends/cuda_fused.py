"""The CUDA backend's convolution, affine and loss steps: GEMMs with fused epilogues, reused scratch.

A convolution is im2col, one GEMM and one :data:`~xpnet.backends.cuda_fused_src.BIAS_ACT` kernel (bias,
and the ReLU of a fused chain) forward; backward, one
:data:`~xpnet.backends.cuda_fused_src.ACT_GRAD` kernel (the ReLU's mask and the bias gradient), the
weight GEMM and, unless the input gradient is not wanted, the column GEMM and col2im. An affine layer
is the same without the columns, with the chain's dropout in the same two kernels. The columns and the
masked gradient are scratch kept in the layer's workspace dict (training batches reuse them); the
gradients go where the caller says (``out``: a model's flat gradient buffer).
"""

from collections import namedtuple

import numpy as np

from xpnet import precision
from xpnet.backends.shapes import out_size

# y: the output, where a fused ReLU's mask is read; pool: (acc, b, arg, window) of a fused ReLU + max pool
ConvCache = namedtuple("ConvCache", "col x x_shape y pool", defaults=(None,))
AffineCache = namedtuple("AffineCache", "y drop")  # drop: (key, offset slot, ratio, scale) of a fused dropout

_ROWS = 256  # rows of one thread's slice in a bias-gradient reduction (partial sums of <= 256 terms)
_NO_DROP = (0, None, 0.0, 1.0)  # None: the backend's zero offset word


class CudaFusedLayers:
    """Mixed into :class:`~xpnet.backends.cuda_backend.CudaBackend` (``xp`` and ``_kernels`` are its)."""

    def _scratch(self, ws, name, shape, dtype):
        """A buffer kept in the workspace dict ``ws`` under ``name`` (new when ws is None or it does not fit)."""
        buf = None if ws is None else ws.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = self.xp.empty(shape, dtype=dtype)
            if ws is not None:
                ws[name] = buf
        return buf

    def _reused(self, ws, reuse, name, shape, dtype):
        """An output buffer: the one kept in ``ws`` when ``reuse`` (the caller is done with it), else None
        (the operation makes a new array)."""
        return self._scratch(ws, name, shape, dtype) if reuse and ws is not None else None

    def _counters(self, n):
        """The backend's zeroed int32 counters of the last-thread reductions (each kernel leaves them 0)."""
        count = getattr(self, "_count", None)
        if count is None or count.size < n:
            count = self._count = self.xp.zeros(max(int(n), 1024), dtype=np.int32)
        return count

    def _partials(self, n, dtype):
        """Backend scratch for ``n`` partial sums (kernels on one stream run one after the other)."""
        parts = getattr(self, "_parts", {})
        self._parts = parts
        buf = parts.get(np.dtype(dtype))
        if buf is None or buf.size < n:
            buf = parts[np.dtype(dtype)] = self.xp.empty(max(int(n), 4096), dtype=dtype)
        return buf

    def _offset(self, slot):
        """A dropout's offset word, or for no dropout the backend's own (unread: ratio is 0)."""
        if slot is None:
            slot = getattr(self, "_no_offset", None)
            if slot is None:
                slot = self._no_offset = self.xp.zeros(1, dtype=np.uint64)
        return slot

    def _bias_act(self, y, b, relu, drop=_NO_DROP):
        key, offset, ratio, scale = drop
        self._kernels.bias_act(b, y.shape[-1], int(relu), np.uint64(key), self._offset(offset), float(ratio),
                               y.dtype.type(scale), y)

    def _act_grad(self, dout, y, F, P, d, db, relu, drop=_NO_DROP):
        """``d`` (M, F) = dout (read as (N, F, P)) through the chain's dropout and ReLU; ``db`` its column sums."""
        M = d.shape[0]
        S = -(-M // _ROWS)
        key, offset, ratio, scale = drop
        wide = precision.compute_dtype(d.dtype)
        self._kernels.act_grad(dout, d if y is None else y, F, P, M, _ROWS, int(relu), np.uint64(key),
                               self._offset(offset), float(ratio), d.dtype.type(scale), d, db,
                               self._partials(S * F, wide), self._counters(F), size=S * F)

    def _grad_buffers(self, out, shapes, dtype):
        dests = out if out is not None else (None,) * len(shapes)
        return [self.xp.empty(s, dtype=dtype) if o is None else o for o, s in zip(dests, shapes, strict=True)]

    # -- convolution -------------------------------------------------------------------------
    def conv2d_forward(self, x, W, b, stride, pad, ws=None, keep=True, relu=False, reuse=False, pool=None):
        """im2col (into the workspace's columns when training), one GEMM, one kernel for bias (+ ReLU), or
        for bias, ReLU and max pool (``pool``)."""
        N, _, H, Wd = x.shape
        FN, C, KH, KW = W.shape
        OH, OW = out_size(H, Wd, KH, KW, stride, pad)
        if pool is not None and not relu:  # no kernel for a max pool right after the bias: the separate ones
            return self._activated(*self.conv2d_forward(x, W, b, stride, pad, ws, keep), False, pool)
        col = self._scratch(ws if keep else None, "col", (N * OH * OW, C * KH * KW), x.dtype)
        self._im2col_into(x, KH, KW, stride, pad, 0, col)
        if pool is not None:
            return self._conv_relu_pool(x, W, b, col, (N, FN, OH, OW), pool, ws, keep, reuse)
        y = self.xp.matmul(col, W.reshape(FN, -1).T, out=self._reused(ws, reuse, "y", (col.shape[0], FN), x.dtype))
        self._bias_act(y, b, relu)
        cache = ConvCache(col if keep else None, None if keep else x, x.shape, y if relu else None)
        return y.reshape(N, OH, OW, FN).transpose(0, 3, 1, 2), cache

    def conv2d_backward(self, dout, cache, W, stride, pad, ws=None, input_grad=True, out=None, reuse=False):
        """One kernel for the fused ReLU's (and max pool's) backward and db, the dW GEMM into ``out``; dcol
        GEMM + col2im for dx."""
        dout, cache = self._deactivated(dout, cache)  # a max pool fused after a bias alone: its own kernel
        col, x, x_shape, y, pooled = cache
        FN, C, KH, KW = W.shape
        if col is None:  # forward ran with keep=False: rebuild the columns from x
            col = self.im2col(x, KH, KW, stride, pad)
        N, _, H, Wd = x_shape
        OH, OW = out_size(H, Wd, KH, KW, stride, pad)
        dW, db = self._grad_buffers(out, (W.shape, (FN,)), dout.dtype)
        d = self._scratch(ws, "d", (N * OH * OW, FN), dout.dtype)
        if pooled is None:
            self._act_grad(dout, y, FN, OH * OW, d, db, y is not None)
        else:
            self._pool_act_grad(dout, pooled, (N, FN, OH, OW), d, db)
        self.xp.matmul(d.T, col, out=dW.reshape(FN, -1))
        if not input_grad:
            return None, dW, db
        dcol = self.xp.matmul(d, W.reshape(FN, -1), out=self._scratch(ws, "dcol", col.shape, col.dtype))
        dx = self._reused(ws, reuse, "dx", x_shape, dout.dtype)
        return self.col2im(dcol, x_shape, KH, KW, stride, pad, out=dx), dW, db

    def _conv_relu_pool(self, x, W, b, col, shape, pool, ws, keep, reuse):
        """The GEMM into scratch, then one kernel for bias, ReLU and the max pool ``(KH, KW, stride, pad)``."""
        N, FN, OH, OW = shape
        KH, KW, (SH, SW), (QH, QW) = pool
        PH, PW = out_size(OH, OW, KH, KW, (SH, SW), (QH, QW))
        acc = self.xp.matmul(col, W.reshape(FN, -1).T,
                             out=self._scratch(ws if keep else None, "acc", (N * OH * OW, FN), x.dtype))
        out = self._reused(ws, reuse, "pooled", (N, FN, PH, PW), x.dtype)
        out = self.xp.empty((N, FN, PH, PW), dtype=x.dtype) if out is None else out
        arg = self._scratch(ws, "arg", (N, FN, PH, PW), np.dtype(np.int32))
        self._kernels.bias_relu_pool(acc, b, FN, OH, OW, PH, PW, KH, KW, SH, SW, QH, QW, out, arg)
        cache = ConvCache(col if keep else None, None if keep else x, x.shape, None, (acc, b, arg, pool))
        return out, cache

    def _pool_act_grad(self, dpool, pooled, shape, d, db):
        acc, b, arg, (KH, KW, (SH, SW), (QH, QW)) = pooled
        N, FN, OH, OW = shape
        _, _, PH, PW = arg.shape
        M = d.shape[0]
        S = -(-M // _ROWS)
        self._kernels.pool_act_grad(dpool, arg, acc, b, FN, OH, OW, PH, PW, KH, KW, SH, SW, QH, QW, M, _ROWS, d, db,
                                    self._partials(S * FN, precision.compute_dtype(d.dtype)), self._counters(FN),
                                    size=S * FN)

    # -- affine layers -----------------------------------------------------------------------
    def affine_forward(self, x, W, b, relu=False, dropout=0.0, rng=None, ws=None, reuse=False):
        """One GEMM, one kernel for bias, ReLU and dropout (the mask from ``rng``'s counter-based stream, whose
        reservation is one more launch)."""
        y = self.xp.matmul(x, W, out=self._reused(ws, reuse, "y", (x.shape[0], W.shape[1]), x.dtype))
        drop = _NO_DROP
        if dropout:  # the draw's offset in a word of the workspace: the same arguments every step
            slot = self._scratch(ws, "offset", (1,), np.dtype(np.uint64))
            drop = (rng.reserve(y.size, slot), slot, float(dropout), 1.0 / (1.0 - dropout))
        self._bias_act(y, b, relu, drop)
        return y, AffineCache(y if relu else None, drop)

    def affine_backward(self, dout, cache, x, W, input_grad=True, out=None, ws=None, reuse=False):
        """One kernel for the dropout and ReLU masks and db (dropout's mask drawn again), two GEMMs."""
        y, drop = cache
        N, F = dout.shape
        dW, db = self._grad_buffers(out, (W.shape, (F,)), dout.dtype)
        d = self._scratch(ws, "d", (N, F), dout.dtype)
        self._act_grad(dout, y, F, 1, d, db, y is not None, drop)
        self.xp.matmul(x.T, d, out=dW)
        if not input_grad:
            return None, dW, db
        return self.xp.matmul(d, W.T, out=self._reused(ws, reuse, "dx", x.shape, dout.dtype)), dW, db

    # -- loss --------------------------------------------------------------------------------
    def softmax_cross_entropy(self, y, t, ws=None, reuse=False):
        """One kernel: the probabilities, each row's share of the mean, and their sum (the loss, 0-d).

        A label outside [0, K) makes the loss NaN (raising would need a host sync).
        """
        N, K = y.shape
        wide = precision.compute_dtype(y.dtype)
        p = self._scratch(ws, "p", (N, K), wide)
        loss = self._scratch(ws if reuse else None, "loss", (1,), wide)
        self._kernels.softmax_xent_forward(self.xp.ascontiguousarray(y), t, K, wide.type(1.0 / N), p,
                                           self._partials(N, wide), loss, self._counters(1))
        return loss.reshape(()), p

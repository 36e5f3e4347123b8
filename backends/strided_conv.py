"""Strided convolutions on the stride-1 direct kernels, by space-to-depth (polyphase) rewriting.

A stride-(SH, SW) convolution with KH x KW filters and pad (PH, PW) is a stride-1, pad-0 convolution of
the space-to-depth of the zero-padded input with the space-to-depth of the filters:

- input: ``xs[n, (c, py, px), i, j] = xpad[n, c, SH*i + py, SW*j + px]``, (N, C*SH*SW, HI, WI), where
  ``HI = OH + ceil(KH/SH) - 1`` (so the inner output is exactly OH x OW; padded rows past the input are
  zeros, and those beyond HI*SH are never read by the strided convolution either);
- filters: ``Ws[f, (c, py, px), a, b] = W[f, c, SH*a + py, SW*b + px]``, zero where the tap is past KH or
  KW, (FN, C*SH*SW, ceil(KH/SH), ceil(KW/SW)): where SH divides KH (and SW KW) no FLOP is wasted.

Backward is the same map run the other way: dW is the inner dW with its taps put back (the zero-padded
ones dropped), db the inner db, dx the inverse space-to-depth of the inner dx (a bijection between the
padded input's pixels and ``xs``'s, so each dx pixel is written once; pixels no output reads get 0).

The space-to-depth buffer is the plan's, zeroed once: the copy writes only the pixels that come from x,
so the padding stays zero. As ConvPlan's columns, the kept buffer serves the last training forward pass
(a layer's backward follows its forward); ``keep=False`` copies into a scratch buffer and keeps x, and a
backward, should one come, copies again.
"""

from collections import namedtuple
from dataclasses import replace

import numpy as np

from xpnet.backends import cpu_kernels
from xpnet.backends.cpu_threads import runner
from xpnet.backends.direct_conv import DirectCache, DirectPlan
from xpnet.backends.stage_clock import StageClock

StridedCache = namedtuple("StridedCache", "plan inner x")  # x only where backward must copy it again (keep=False)


def suits(g):
    """Whether "auto" takes this strided shape: where the strides divide the filter (no zero taps)."""
    return g.KH % g.stride[0] == 0 and g.KW % g.stride[1] == 0


def _ceil_div(a, b):
    return -(-a // b)


class StridedPlan:
    """A stride > 1 convolution as a stride-1 :class:`DirectPlan` on its space-to-depth; see the module docstring.

    Same interface as ConvPlan and DirectPlan, plus :meth:`input_grad` and :meth:`weight_grad`.

    Args:
        g: the Geometry (any stride). split: a BatchSplitter or None. clock: the StageClock of the backend.
    """

    fuses_relu = True  # the inner plan's: the output is the inner convolution's, uncropped

    def __init__(self, g, split=None, clock=None, prefix=""):
        self.g, self.split = g, split
        self.clock, self.prefix = clock if clock is not None else StageClock(), prefix
        SH, SW = g.stride
        self.KI = (_ceil_div(g.KH, SH), _ceil_div(g.KW, SW))
        self.HI, self.WI = g.OH + self.KI[0] - 1, g.OW + self.KI[1] - 1
        self.CI = g.C * SH * SW
        KA, KB = self.KI
        inner = replace(g, C=self.CI, H=self.HI, W=self.WI, KH=KA, KW=KB, stride=(1, 1), pad=(0, 0))
        self.inner = DirectPlan(inner, split, self.clock, prefix + "s2d: ")
        self._dims = cpu_kernels.space_to_depth_dims(g.C, g.H, g.W, g.stride, g.pad, self.HI, self.WI)
        self._wdims = cpu_kernels.space_to_depth_dims(g.C, g.KH, g.KW, g.stride, (0, 0), KA, KB)
        self._run = runner(split, blas=False)
        self._buffers = {}

    def __repr__(self):
        return f"StridedPlan(space-to-depth to {self.CI}x{self.HI}x{self.WI}, {self.KI[0]}x{self.KI[1]}, {self.g})"

    def _stage(self, name, k, fn, *args):
        return self.clock.run(self.prefix + name, k, fn, *args)

    def _buffer(self, what):
        buf = self._buffers.get(what)
        if buf is None:  # zeroed once: the copies never write the padding
            buf = self._buffers[what] = np.zeros((self.g.N, self.CI, self.HI, self.WI), np.float32)
        return buf

    def space_to_depth(self, x, what="kept"):
        """The plan's buffer ``what`` (N, C*SH*SW, HI, WI) holding the space-to-depth of x (N, C, H, W)."""
        x, xs = np.ascontiguousarray(x, np.float32), self._buffer(what)
        self._run(lambda k, n0, n1: self._stage("space-to-depth", k, cpu_kernels.space_to_depth, x, xs, self._dims,
                                                n0, n1), self.g.N)
        return xs

    def depth_to_space(self, dxs):
        """dx (N, C, H, W) from the inner convolution's dx (N, C*SH*SW, HI, WI)."""
        g = self.g
        dx = np.empty((g.N, g.C, g.H, g.W), np.float32)
        self._run(lambda k, n0, n1: self._stage("depth-to-space", k, cpu_kernels.depth_to_space, dxs, dx, self._dims,
                                                n0, n1), g.N)
        return dx

    def inner_filters(self, W):
        """Ws (FN, C*SH*SW, KH', KW') from W (FN, C, KH, KW): the taps of each phase, zero past KH, KW.

        It is the space-to-depth of W taken as FN images of C channels, KH x KW, unpadded."""
        Ws = np.zeros((self.g.FN, self.CI, *self.KI), np.float32)
        cpu_kernels.space_to_depth(np.ascontiguousarray(W, np.float32), Ws, self._wdims, 0, self.g.FN)
        return Ws

    def outer_filters(self, dWs):
        """dW (FN, C, KH, KW) from the inner dW (FN, C*SH*SW, KH', KW'): :meth:`inner_filters` undone."""
        g = self.g
        dW = np.empty((g.FN, g.C, g.KH, g.KW), np.float32)
        cpu_kernels.depth_to_space(np.ascontiguousarray(dWs, np.float32), dW, self._wdims, 0, g.FN)
        return dW

    def forward(self, x, W, b, keep=True, relu=False):
        """``(out (N, FN, OH, OW), StridedCache)``; ``b`` may be None; ``relu``: out = maximum(conv, 0)."""
        xs = self.space_to_depth(x, "kept" if keep else "scratch")
        out, inner = self.inner.forward(xs, self.inner_filters(W), b, relu=relu)
        return out, StridedCache(self, inner, None if keep else x)

    def backward(self, dout, cache, W, input_grad=True):
        """``(dx, dW, db)`` for :meth:`forward`'s ``cache``; dx None (not computed) unless ``input_grad``."""
        inner = cache.inner
        if cache.x is not None:  # the forward pass ran with keep=False: its scratch copy may be overwritten
            inner = DirectCache(self.inner, self.space_to_depth(cache.x), inner.y)
        dxs, dWs, db = self.inner.backward(dout, inner, self.inner_filters(W), input_grad)
        return None if dxs is None else self.depth_to_space(dxs), self.outer_filters(dWs), db

    def input_grad(self, dout, W):
        """dx (N, C, H, W): the convolution's adjoint applied to ``dout`` (N, FN, OH, OW); needs no forward pass."""
        return self.depth_to_space(self.inner.input_grad(dout, self.inner_filters(W)))

    def weight_grad(self, x, dout):
        """``(dW (FN, C, KH, KW), db (FN,))`` of the convolution of ``x`` (N, C, H, W) for ``dout``; no cache."""
        inner = DirectCache(self.inner, self.space_to_depth(x, "scratch"), None)  # a kept forward's stays
        _, dWs, db = self.inner.backward(dout, inner, None, input_grad=False)
        return self.outer_filters(dWs), db

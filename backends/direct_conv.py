"""The compiled direct convolution (``direct_conv.c``): loading it, and the plan that runs it.

:class:`DirectPlan` is the other algorithm a :func:`numpy_conv_plan.plan_for` may pick for a layer shape:
float32, stride 1, on a CPU with AVX-512F, when the package's build compiled the kernels. It has the
:class:`~xpnet.backends.numpy_conv_plan.ConvPlan` interface (``forward``, ``backward``, ``input_grad``,
``weight_grad``, a clock's stages):

- forward: the kernel on each batch slice, bias added in its epilogue;
- dW: the kernel's filter gradient per slice, partial sums added in float32;
- dx: the full convolution of dout with the flipped, transposed filters (the forward kernel again);
- db: dout summed over the batch and pixels.

Arrays are NCHW and C-contiguous throughout (the kernels index them so); a non-contiguous input is copied
once. Where the kernels are not available, :func:`unavailable` says why, and plans stay on im2col.
"""

import ctypes
from collections import namedtuple

import numpy as np

from xpnet.backends import extension
from xpnet.backends.cpu_threads import runner, sum_slices
from xpnet.backends.stage_clock import StageClock

DirectCache = namedtuple("DirectCache", "plan x y")  # y: the output, where a ReLU was fused (its mask is y > 0)

_LIB = None
_WHY = None
NO_AVX512 = "this CPU has no AVX-512F"


def _load():
    """The kernels' ctypes library, or None with the reason in ``_WHY``."""
    global _LIB, _WHY
    if _LIB is not None or _WHY is not None:
        return _LIB
    lib, _WHY = extension.library()
    if lib is None:
        return None
    if not lib.xpnet_dc_supported():
        _WHY = NO_AVX512
        return None
    ptr, i32 = ctypes.c_void_p, ctypes.c_int
    lib.xpnet_dc_forward.argtypes = [ptr, ptr, ptr, ptr, ptr] + [i32] * 11
    for fn in (lib.xpnet_dc_weight_grad_taps, lib.xpnet_dc_weight_grad_pixels):
        fn.argtypes, fn.restype = [ptr, ptr, ptr, ptr, ptr] + [i32] * 10, i32
    lib.xpnet_dc_forward.restype = i32
    _LIB = lib
    return lib


def unavailable():
    """Why the direct convolution can't run in this process (a sentence), or None where it can."""
    _load()
    return _WHY


def why_not(g, dtype):
    """Why the kernels can't compute this convolution (a sentence), or None where they can.

    They need float32 and, at stride 1, a padding below the filter size (a larger one would make dx's full
    convolution a cropped one, which the kernel doesn't do). A strided convolution runs them on its
    space-to-depth (strided_conv.StridedPlan), which has padding 0 and stride 1, whatever the layer's.
    """
    if np.dtype(dtype) != np.float32:
        return f"the direct convolution is float32 only, not {np.dtype(dtype)}"
    if g.stride == (1, 1) and (g.pad[0] >= g.KH or g.pad[1] >= g.KW):
        return f"the direct convolution needs a padding below the filter size {g.KH}x{g.KW}, not {g.pad}"
    return unavailable()


def suits(g):
    """Whether the kernels pay for this shape, where they can run (``algorithm="auto"`` asks).

    dx, the full convolution of dout, runs every tap at each of the H x W input pixels, but only about
    OH*OW/(H*W) of those multiply-adds meet dout's OH x OW plane; the rest are on its zero padding. Below a
    quarter im2col is faster (a 7x7 layer from 1x1 to 7x7, DCGAN's first transposed convolution: 20x), at a
    quarter they are even (3x3 from 2x2 to 4x4), and DeepConvNet's layers are at 1 or more.
    """
    return 4 * g.OH * g.OW >= g.H * g.W


def _ptr(a):
    return a.ctypes.data


def _check(rc):
    if rc != 0:
        raise MemoryError("direct convolution: could not allocate its per-thread scratch")


def by_pixels(g):
    """Whether dW goes by outer products over pixel columns (else by per-tap dot products), for this shape.

    Pixel columns pay a (Q, K) copy per image and win where maps are small and channels many: timed on
    DeepConvNet's layers (1 thread, batch 100, GFLOP/s pixels vs taps): 64x8x8 -> 64: 91 vs 74; 32x8x8 -> 64:
    98 vs 68; 16 and 32 channels at 14x14 and 16x16: 53 vs 50, 70 vs 75; 16x28x28: 40 vs 56; 1x28x28: 5 vs 25.
    """
    return g.OH * g.OW <= 128 and g.C >= 8


def _opt(a):
    return None if a is None else a.ctypes.data


class DirectPlan:
    """The direct convolution of one layer shape; same interface as ConvPlan (see the module docstring).

    It can also run a ReLU after the convolution (:attr:`fuses_relu`): in the kernel's epilogue forward, and
    backward as dout * (y > 0) inside the dW and dx kernels, the same multiply as the ReLU layer's, so the
    fused pair gives the unfused pair's values.

    Args:
        g: the Geometry (stride 1). split: a BatchSplitter or None. clock: the StageClock of the backend.
    """

    fuses_relu = True

    def __init__(self, g, split=None, clock=None, prefix=""):
        self.g, self.split = g, split
        self.clock, self.prefix = clock if clock is not None else StageClock(), prefix
        self._run = runner(split, blas=False)  # the kernels call no BLAS
        self._lib = _load()
        lib = self._lib
        self._dW_kernel = lib.xpnet_dc_weight_grad_pixels if by_pixels(g) else lib.xpnet_dc_weight_grad_taps

    def __repr__(self):
        return f"DirectPlan(dW by {'pixels' if by_pixels(self.g) else 'taps'}, {self.g})"

    def _stage(self, name, k, fn, *args):
        return self.clock.run(self.prefix + name, k, fn, *args)

    def _conv(self, stage, x, W, b, pad, out_channels, relu=False, xmask=None):
        """Stride-1 convolution of ``x`` (N, C, H, W) (times ``xmask > 0`` if given) with ``W`` (F, C, KH, KW),
        ``pad``; bias ``b`` or None; then maximum(., 0) if ``relu``."""
        N, C, H, Wd = x.shape
        KH, KW = W.shape[2:]
        out = np.empty((N, out_channels, H + 2 * pad[0] - KH + 1, Wd + 2 * pad[1] - KW + 1), np.float32)
        lib, bias = self._lib, None if b is None else np.ascontiguousarray(b, np.float32)

        def part(k, n0, n1):
            _check(self._stage(stage, k, lib.xpnet_dc_forward, _ptr(x), _opt(xmask), _ptr(W), _opt(bias), _ptr(out),
                               int(relu), n0, n1, C, H, Wd, out_channels, KH, KW, *pad))

        self._run(part, N)
        return out

    def forward(self, x, W, b, keep=True, relu=False):
        """``(out (N, FN, OH, OW), DirectCache)``; ``b`` may be None; ``relu``: out = maximum(conv, 0).

        ``keep`` is moot: nothing is kept but x (and out, for a fused ReLU's backward).
        """
        x, W = np.ascontiguousarray(x), np.ascontiguousarray(W)
        out = self._conv("direct", x, W, b, self.g.pad, self.g.FN, relu)
        return out, DirectCache(self, x, out if relu else None)

    def backward(self, dout, cache, W, input_grad=True):
        """``(dx, dW, db)`` for :meth:`forward`'s ``cache``; dx None (not computed) unless ``input_grad``."""
        dout = np.ascontiguousarray(dout, np.float32)
        dW, db = self._weight_grad_of(cache.x, dout, cache.y)
        return self._input_grad_of(dout, W, cache.y) if input_grad else None, dW, db

    def input_grad(self, dout, W):
        """dx (N, C, H, W) for ``dout`` (N, FN, OH, OW) and filters ``W`` (FN, C, KH, KW): the adjoint of
        :meth:`forward` without bias or ReLU; needs no forward pass."""
        return self._input_grad_of(np.ascontiguousarray(dout, np.float32), W, None)

    def weight_grad(self, x, dout):
        """``(dW (FN, C, KH, KW), db (FN,))`` of :meth:`forward` (no ReLU) at input ``x`` (N, C, H, W) for
        ``dout`` (N, FN, OH, OW), from the arrays alone (no forward cache)."""
        return self._weight_grad_of(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(dout, np.float32), None)

    def _weight_grad_of(self, x, dout, y):
        """(dW, db) by the filter-gradient kernel per batch slice; dout times ``y > 0`` where ``y`` is given."""
        g = self.g

        def part(k, n0, n1):
            dW, db = np.zeros((g.FN, g.C, g.KH, g.KW), np.float32), np.zeros(g.FN, np.float32)
            _check(self._stage("direct dW", k, self._dW_kernel, _ptr(x), _ptr(dout), _opt(y), _ptr(dW),
                               _ptr(db), n0, n1, g.C, g.H, g.W, g.FN, g.KH, g.KW, *g.pad))
            return dW, db

        return sum_slices(self._run(part, g.N), np.float32)

    def _input_grad_of(self, dout, W, y):
        """dx: the full convolution of dout (times ``y > 0`` where ``y`` is given) with the flipped filters."""
        g = self.g
        flipped = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), np.float32)  # (C, FN, KH, KW)
        return self._conv("direct dx", dout, flipped, None, (g.KH - 1 - g.pad[0], g.KW - 1 - g.pad[1]), g.C, xmask=y)

"""One plan per convolution shape, chosen once and reused (as oneDNN primitives and cuDNN plans are).

A :class:`ConvPlan` fixes, for one (input shape, filter shape, stride, pad, dtype), everything that does
not depend on the values: the column layout, how dx is computed, and the scratch buffers, which it owns
(fresh 10-100 MB arrays cost more in page faults than the copies themselves). Layers keep their plans in
the workspace dict they pass to the backend (:func:`plan_for`).

Two memory regimes, one method each:

- :meth:`ConvPlan.forward` with ``keep=True`` (training): one column buffer for the whole batch, kept
  for the backward pass.
- ``keep=False`` (inference): each thread makes and uses the columns in L3-sized runs of images
  (the runs stay in cache, a batch-sized buffer does not); the cache then holds no columns and a
  backward pass, should one come, rebuilds them.

Every plan kind (this one, :class:`~xpnet.backends.direct_conv.DirectPlan`) has the same interface:
``forward(x, W, b, keep) -> (out, cache)``, ``backward(dout, cache, W, input_grad) -> (dx, dW, db)``, and
the two halves of backward from given arrays, no forward cache: ``input_grad(dout, W) -> dx`` and
``weight_grad(x, dout) -> (dW, db)`` (a transposed convolution runs on a plan through these: its forward
is the plan's input_grad, see ``NumpyBackend.conv2d_transpose_forward``).

Backward, dx is either dcol = W^T @ dout scattered back by KH*KW strided adds in L3-sized runs of
images, or, for stride-1 layers with FN <= C, the full convolution of dout with the flipped filters, run
by a child plan (see :func:`dx_by_full_conv`).

Every stage runs through the backend's :class:`StageClock`, a no-op unless a caller records (the
benchmarks' ``conv`` suite does, through ``NumpyBackend.conv_stages``).
"""

from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from xpnet.backends import direct_conv, strided_conv
from xpnet.backends import numpy_conv as nc
from xpnet.backends.cpu_threads import runner, sum_slices
from xpnet.backends.shapes import out_size, transposed_length
from xpnet.backends.stage_clock import StageClock

MAX_PLANS = 4  # per workspace: a layer sees a few shapes (training batch, last batch, evaluation batch)

ConvCache = namedtuple("ConvCache", "plan col x")  # x only where backward must rebuild the columns


@dataclass(frozen=True)
class Geometry:
    """A convolution's sizes: input (N, C, H, W), filters (FN, C, KH, KW), stride, pad, output OH x OW."""

    N: int
    C: int
    H: int
    W: int
    FN: int
    KH: int
    KW: int
    stride: tuple
    pad: tuple

    @property
    def OH(self):
        return out_size(self.H, self.W, self.KH, self.KW, self.stride, self.pad)[0]

    @property
    def OW(self):
        return out_size(self.H, self.W, self.KH, self.KW, self.stride, self.pad)[1]

    @property
    def K(self):
        return self.C * self.KH * self.KW

    @property
    def P(self):
        return self.OH * self.OW


def transposed_geometry(x_shape, W_shape, stride, pad, output_pad):
    """The Geometry of the convolution whose adjoint is this transposed convolution.

    The transposed convolution maps x (N, C, H, W) to (N, FN, OH, OW) with filters (C, FN, KH, KW); the
    convolution with the same filters (its FN, C = the transposed C, FN), stride and pad maps (OH, OW) back
    to (H, W), the output padding falling to its floor: its dx is the transposed forward, its forward the
    transposed dx, and its dW with input and dout swapped the transposed dW.
    """
    N, C, H, Wd = x_shape
    _, FN, KH, KW = W_shape
    OH, OW = (transposed_length(n, k, s, p, o) for n, k, s, p, o in zip((H, Wd), (KH, KW), stride, pad, output_pad))
    g = Geometry(N, FN, OH, OW, C, KH, KW, tuple(stride), tuple(pad))
    if (g.OH, g.OW) != (H, Wd):
        raise ValueError(f"transposed convolution: output_pad must be smaller than the stride on each axis, "
                         f"got output_pad={tuple(output_pad)} for stride={tuple(stride)}")
    return g


def dx_by_full_conv(g):
    """dx as the full convolution of dout with the flipped filters (an im2col of dout + GEMM), not dcol + col2im.

    Both write a 9x-expanded array, but the full convolution's GEMM has the fat inner dimension FN*KH*KW
    and writes dx once instead of KH*KW read-modify-write passes. It writes FN*KH*KW rows where col2im's
    dcol has C*KH*KW, so it pays only when FN <= C (timed on DeepConvNet: faster for conv2/4/6, slower
    for conv3/5, where FN = 2C). Stride 1 only.
    """
    return g.K >= nc.THIN and g.stride == (1, 1) and g.FN <= g.C and g.FN * g.KH * g.KW >= nc.THIN \
        and g.pad[0] < g.KH and g.pad[1] < g.KW


class ConvPlan:
    """Layout, dx method and buffers of one convolution shape; see the module docstring.

    Args:
        g: the :class:`Geometry`. dtype: the arrays' dtype. split: a BatchSplitter or None (one thread).
        clock: the :class:`StageClock` the stages run through (None: a private one that never records).
    """

    fuses_relu = False  # a ReLU after it runs as the backend's own op

    def __init__(self, g, dtype, split=None, clock=None, prefix=""):
        self.g, self.dtype, self.split = g, np.dtype(dtype), split
        self.clock, self.prefix = clock if clock is not None else StageClock(), prefix
        self.layout = nc.BatchedLayout(g) if g.K < nc.THIN else nc.GemmLayout(g)
        self.full_conv_dx = dx_by_full_conv(g)
        self._run = runner(split)
        self._col = None  # the batch's columns (keep=True)
        self._scratch = {}  # per-thread runs of columns and dcol, keyed by (what, thread, images)
        self._dx_plan = None

    def __repr__(self):
        return (f"ConvPlan({type(self.layout).__name__}, dx by {'full conv' if self.full_conv_dx else 'col2im'}, "
                f"{self.g})")

    def _stage(self, name, k, fn, *args):
        return self.clock.run(self.prefix + name, k, fn, *args)

    def _batch_columns(self):
        if self._col is None:
            self._col = np.zeros(self.layout.col_shape(self.g.N), self.dtype)  # zeroed: see numpy_conv.gather
        return self._col

    def _scratch_buffer(self, what, k, m, shape, new):
        buf = self._scratch.get((what, k, m))
        if buf is None:
            buf = self._scratch[what, k, m] = new(shape, self.dtype)
        return buf

    def forward(self, x, W, b, keep=True):
        """``(out (N, FN, OH, OW), ConvCache)``; ``b`` may be None (no bias). See the module docstring."""
        Wc, out = W.reshape(self.g.FN, -1), self.layout.out_buffer(x.dtype)
        if keep:
            col = self._batch_columns()

            def part(k, n0, n1):
                self._stage("im2col", k, self.layout.im2col, x, col, n0, n1, 0)
                self._stage("gemm", k, self.layout.product, Wc, col, out, n0, n1, 0, b)
        else:
            col = None

            def part(k, n0, n1):
                for a, z in nc.chunks(n0, n1, self.g.K * self.g.P * self.dtype.itemsize):
                    run = self._scratch_buffer("col", k, z - a, self.layout.col_shape(z - a), np.zeros)
                    self._stage("im2col", k, self.layout.im2col, x, run, a, z, a)
                    self._stage("gemm", k, self.layout.product, Wc, run, out, a, z, a, b)

        self._run(part, self.g.N)
        return self.layout.output(out), ConvCache(self, col, None if keep else x)

    def backward(self, dout, cache, W, input_grad=True):
        """``(dx, dW, db)`` for :meth:`forward`'s ``cache``; dx None (not computed) unless ``input_grad``."""
        col = cache.col if cache.col is not None else self._columns(cache.x)  # keep=False: make them now
        if input_grad and not self.full_conv_dx:  # dx and dW in one pass over each slice of dout
            return self._grads(dout, col, W, by_col2im=True)
        _, dW, db = self._grads(dout, col, W, by_col2im=False)
        return self.input_grad(dout, W) if input_grad else None, dW, db

    def input_grad(self, dout, W):
        """dx (N, C, H, W) for ``dout`` (N, FN, OH, OW) and filters ``W`` (FN, C, KH, KW): the adjoint of
        :meth:`forward` without its bias, by the plan's dx method; needs no forward pass."""
        if self.full_conv_dx:
            return self._dx_by_full_conv(dout, W)
        d, Wc, dx = self.layout.dout_matrix(dout), W.reshape(self.g.FN, -1), self.layout.dx_buffer(dout.dtype)
        self._run(lambda k, n0, n1: self._dx_by_col2im(Wc, d, dx, k, n0, n1), self.g.N)
        return dx

    def weight_grad(self, x, dout):
        """``(dW (FN, C, KH, KW), db (FN,))`` of :meth:`forward` at input ``x`` (N, C, H, W) for ``dout``
        (N, FN, OH, OW), from the arrays alone (no forward cache): the columns of ``x`` are made here, in the
        batch's column buffer (where a ``keep=True`` forward pass left its own for its backward)."""
        _, dW, db = self._grads(dout, self._columns(x), None, by_col2im=False)
        return dW, db

    def _columns(self, x):
        """The batch's column buffer, filled with the columns of ``x``."""
        col = self._batch_columns()
        self._run(lambda k, n0, n1: self._stage("im2col", k, self.layout.im2col, x, col, n0, n1, 0), self.g.N)
        return col

    def _grads(self, dout, col, W, by_col2im):
        """``(dx or None, dW, db)`` from the columns ``col`` of the input; dx by dcol + col2im, in the
        same pass over each batch slice, if ``by_col2im``."""
        g = self.g
        d, acc = self.layout.dout_matrix(dout), nc.acc_dtype(dout)
        Wc = W.reshape(g.FN, -1) if by_col2im else None
        dx = self.layout.dx_buffer(dout.dtype) if by_col2im else None

        def part(k, n0, n1):
            if by_col2im:
                self._dx_by_col2im(Wc, d, dx, k, n0, n1)
            return self._stage("gemm dW", k, self.layout.weight_grads, d, col, n0, n1, acc)

        dW, db = sum_slices(self._run(part, g.N), dout.dtype)
        return dx, dW.reshape(g.FN, g.C, g.KH, g.KW), db

    def _dx_by_col2im(self, Wc, d, dx, k, n0, n1):
        """dx for images n0..n1 by dcol = W^T @ dout and KH*KW strided adds, in L3-sized runs of images."""
        for a, z in nc.chunks(n0, n1, self.g.K * self.g.P * self.dtype.itemsize):
            buf = self._scratch_buffer("dcol", k, z - a, self.layout.col_shape(z - a), np.empty)
            self._stage("gemm dx", k, self.layout.dcol, Wc, d, a, z, buf)
            self._stage("col2im", k, self.layout.col2im, buf, dx, a, z)

    def _dx_by_full_conv(self, dout, W):
        g = self.g
        if self._dx_plan is None:
            flipped = Geometry(g.N, g.FN, g.OH, g.OW, g.C, g.KH, g.KW, (1, 1), (g.KH - 1 - g.pad[0],
                                                                                  g.KW - 1 - g.pad[1]))
            self._dx_plan = ConvPlan(flipped, self.dtype, self.split, self.clock, prefix="dx: ")
        flipped_W = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, FN, KH, KW)
        return self._dx_plan.forward(dout, flipped_W, None, keep=False)[0]


ALGORITHMS = ("auto", "direct", "im2col")


def new_plan(g, dtype, split=None, clock=None, algorithm="auto"):
    """The algorithm for this shape, chosen once.

    ``algorithm``: "direct" (the compiled direct convolution, see direct_conv, on the space-to-depth of a
    strided one, see strided_conv; ValueError where it can't run), "im2col" (:class:`ConvPlan`), or "auto":
    direct where it can run and suits the shape (stride 1: :func:`direct_conv.suits`, strided:
    :func:`strided_conv.suits`); im2col elsewhere.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"convolution algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if algorithm != "im2col":
        why = direct_conv.why_not(g, dtype)
        if why is None and g.stride == (1, 1) and (algorithm == "direct" or direct_conv.suits(g)):
            return direct_conv.DirectPlan(g, split, clock)
        if why is None and g.stride != (1, 1) and (algorithm == "direct" or strided_conv.suits(g)):
            return strided_conv.StridedPlan(g, split, clock)
        if algorithm == "direct":
            raise ValueError(f"convolution algorithm 'direct' can't run {g}: {why}")
    return ConvPlan(g, dtype, split, clock)


def plan_for(ws, x, W, stride, pad, split=None, clock=None, algorithm="auto"):
    """The plan for this convolution from the workspace dict ``ws`` (made and kept there on first use).

    ``ws`` None: a fresh plan, buffers and all, that nobody keeps. ``algorithm``: see :func:`new_plan`.
    """
    g = Geometry(*x.shape, W.shape[0], *W.shape[2:], tuple(stride), tuple(pad))
    return plan_of(ws, g, x.dtype, split, clock, algorithm)


def plan_of(ws, g, dtype, split=None, clock=None, algorithm="auto"):
    """:func:`plan_for` by the Geometry ``g`` and the arrays' ``dtype``."""
    if ws is None:
        return new_plan(g, dtype, split, clock, algorithm)
    plans = ws.setdefault("plans", {})
    key = (g, np.dtype(dtype).str)
    plan = plans.pop(key, None)  # re-inserted last: the dict's order is the order of last use
    if plan is None:
        plan = new_plan(g, dtype, split, clock, algorithm)
        while len(plans) >= MAX_PLANS:
            del plans[next(iter(plans))]
    plans[key] = plan
    return plan

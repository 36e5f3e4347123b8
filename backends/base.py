"""The interface every backend implements, and pieces they share."""

import time

import numpy as np

from xpnet import precision
from xpnet.backends import batchnorm, pooling
from xpnet.backends.base_conv import ConvolutionDefaults, store
from xpnet.errors import BackendError


class CPUTimer:
    """Wall-clock timer for host work: ``with timer: ...`` then ``timer.elapsed_ms``."""

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed_ms = (time.perf_counter() - self._start) * 1e3
        return False


class HostTimeline:
    """Wall-clock marks between pieces of host work (work on the CPU is done when its call returns).

    ``mark()`` before the first piece and after each; ``intervals()``: ``[(ms, True), ...]``, one per
    piece (True: the interval is the work's own time); ``host_ms``: first mark to last.
    """

    def __init__(self):
        self._marks = []

    def mark(self):
        self._marks.append(time.perf_counter())

    @property
    def host_ms(self):
        return (self._marks[-1] - self._marks[0]) * 1e3 if self._marks else 0.0

    def intervals(self):
        return [((b - a) * 1e3, True) for a, b in zip(self._marks[:-1], self._marks[1:])]


class Backend(ConvolutionDefaults):
    """One device kind. Subclasses set ``name``, ``device`` and ``xp`` and implement the kernels.

    Kernels (all take and return arrays of this backend):
        im2col(x (N, C, H, W), KH, KW, stride, pad, pad_value) -> col (N*OH*OW, C*KH*KW)
        col2im(col, x_shape, KH, KW, stride, pad) -> dx (N, C, H, W), a gather, deterministic
    """

    name = "base"
    device = "none"
    xp = None
    #: True when arrays live in host memory: reading a scalar back costs no device sync, and MPI can
    #: reduce the buffers in place.
    host_memory = False

    def preferred_eval_batch_size(self, train_batch_size=None):
        """The batch size evaluation passes should use, given the training batch size (if known)."""
        return 1000

    def __repr__(self):
        return f"<xpnet backend {self.name} on {self.device}>"

    # -- transfers ---------------------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Host or device array -> array of this backend (copies only when needed)."""
        raise NotImplementedError

    def asnumpy(self, a):
        """Array of any backend -> NumPy array on the host."""
        raise NotImplementedError

    def owns(self, a):
        """True when ``a`` is an array of this backend."""
        return isinstance(a, self.xp.ndarray)

    # -- timing and sync ---------------------------------------------------------------------
    def synchronize(self):
        """Wait for all queued device work (a no-op on the CPU)."""

    def timer(self):
        """A context-manager timer that is correct for this device; read ``.elapsed_ms`` after."""
        return CPUTimer()

    def timeline(self, hold_ms=0.0):
        """Marks that time consecutive pieces of work by the device's clock (see :class:`HostTimeline`).

        On a GPU the work is first queued behind ``hold_ms`` of busy device, so each interval is the
        pieces' device time rather than the host's time to launch them; give ``hold_ms`` more than the
        previous timeline's ``host_ms``.
        """
        return HostTimeline()

    # -- random numbers ----------------------------------------------------------------------
    def rng(self, seed=None):
        """A random generator on this device with ``random(shape, dtype)`` and ``get_state()``."""
        raise NotImplementedError

    # -- affine layers -----------------------------------------------------------------------
    def affine_forward(self, x, W, b, relu=False, dropout=0.0, rng=None, ws=None, reuse=False):
        """``y = x @ W + b`` (x (N, I), W (I, O), b (O,)), then ReLU if ``relu``, then inverted dropout of
        ``dropout`` (a ratio; 0: none) drawn from ``rng``: ``(y (N, O), cache)`` for :meth:`affine_backward`.

        The same arithmetic as the separate ReLU and dropout steps (:meth:`relu_forward`,
        :meth:`dropout_forward`), so a fused chain gives what the layers give one by one. ``ws`` and
        ``reuse`` as in :meth:`conv2d_forward`.
        """
        y = self.matmul(x, W)
        y += b
        mask = drop = None
        if relu:
            y, mask = self.relu_forward(y)
        if dropout:
            y, drop = self.dropout_forward(y, dropout, rng)
        return y, (mask, drop)

    def affine_backward(self, dout, cache, x, W, input_grad=True, out=None, ws=None, reuse=False):
        """``(dx (N, I) or None, dW, db)`` of :meth:`affine_forward` given dL/dy (N, O); ``input_grad`` and
        ``out`` as in :meth:`conv2d_backward`. ``dout`` is never written."""
        mask, drop = cache
        if drop is not None:
            dout = dout * drop
        if mask is not None:
            dout = self.relu_backward(dout, mask)
        dW, db = self.matmul(x.T, dout), precision.sum_axis0(dout)
        dx = self.matmul(dout, W.T) if input_grad else None
        return dx, *store(out, dW, db)

    # -- pooling -----------------------------------------------------------------------------
    def maxpool2d_forward(self, x, KH, KW, stride, pad, OH, OW, ws=None, reuse=False):
        """Max over each window: ``(out (N, C, OH, OW), cache)``; padding counts as -inf. ``ws``, ``reuse``:
        as in :meth:`conv2d_forward`."""
        return pooling.max_forward(self.xp, x, KH, KW, stride, pad, OH, OW)

    def maxpool2d_backward(self, dout, cache, x_shape, KH, KW, stride, pad, ws=None, reuse=False):
        """dL/dx of :meth:`maxpool2d_forward`; ties send the gradient to the first maximum in (kh, kw) order."""
        return pooling.max_backward(self.xp, dout, cache, x_shape, KH, KW, stride, pad)

    def avgpool2d_forward(self, x, KH, KW, stride, pad, OH, OW):
        """Mean over each window; padding counts as zeros."""
        return pooling.avg_forward(self.xp, x, KH, KW, stride, pad, OH, OW)

    def avgpool2d_backward(self, dout, x_shape, KH, KW, stride, pad):
        """dL/dx of :meth:`avgpool2d_forward`."""
        return pooling.avg_backward(self.xp, dout, x_shape, KH, KW, stride, pad)

    # -- matrix products ---------------------------------------------------------------------
    def matmul(self, a, b):
        """``a @ b`` for 2-D arrays (Affine's three products go through here)."""
        return a @ b

    # -- activations -------------------------------------------------------------------------
    def relu(self, x):
        """``max(x, 0)`` alone, in x's dtype and memory order (inference: no mask)."""
        return self.xp.maximum(x, 0, dtype=x.dtype)

    def relu_forward(self, x):
        """``(max(x, 0), mask x > 0)``, both in x's dtype/bool and memory order."""
        return self.xp.maximum(x, 0, dtype=x.dtype), x > 0

    def relu_backward(self, dout, mask):
        """dL/dx of ReLU: ``dout`` where the mask is set, else 0 (a new array)."""
        return dout * mask

    def leaky_relu(self, x, slope):
        """``x`` where ``x > 0``, else ``x * slope`` (slope in x's dtype), alone (inference: no mask); x any shape."""
        return self.xp.where(x > 0, x, x * x.dtype.type(slope))

    def leaky_relu_forward(self, x, slope):
        """``(leaky_relu(x, slope), mask x > 0)``, the mask a bool array of x's shape."""
        mask = x > 0
        return self.xp.where(mask, x, x * x.dtype.type(slope)), mask

    def leaky_relu_backward(self, dout, mask, slope):
        """dL/dx of LeakyReLU: ``dout`` where the mask is set, else ``dout * slope`` (a new array)."""
        return self.xp.where(mask, dout, dout * dout.dtype.type(slope))

    # -- normalisation -----------------------------------------------------------------------
    def batchnorm_forward(self, x, gamma, beta, eps, stats=None):
        """Normalise x (N, D) per feature or (N, C, H, W) per channel, scale by gamma (C,), shift by beta (C,).

        ``stats``: None for the batch's mean and (biased) variance, else the (C,) ``(mean, var)`` to use (the
        running ones); ``eps`` is added to the variance. Returns ``(y, (mean, var), cache)``: y of x's shape and
        dtype, the statistics used in :func:`xpnet.precision.compute_dtype` of x, what backward needs.
        """
        return batchnorm.forward(self.xp, x, gamma, beta, eps, stats)

    def batchnorm_backward(self, dout, cache, gamma):
        """``(dx, dgamma, dbeta)`` of :meth:`batchnorm_forward` given dL/dy: dx in dout's dtype, the (C,) gradients
        in its compute dtype; the statistics count as constants where the forward was given them."""
        return batchnorm.backward(dout, cache, gamma)

    # -- batches -----------------------------------------------------------------------------
    def gather_batch(self, x, t, idx, ws=None, start=0, count=None):
        """``(x[i], t[i])`` for ``i = idx[start:start + count]`` (all of ``idx`` from ``start`` by default): the
        examples and labels at those integer positions (arrays of this backend).

        ``ws``: a dict the caller owns and is done with the previous batch made with it: a backend may write
        this batch into the same buffers (and keep ``idx`` there: batch after batch of one ``idx``, each
        starting where the last ended, then take the same arguments).
        """
        i = idx[start:] if count is None else idx[start:start + count]
        return x[i], t[i]

    # -- dropout -----------------------------------------------------------------------------
    def dropout_forward(self, x, ratio, rng):
        """Inverted dropout: ``(x * mask, mask)``, mask = 1 / (1 - ratio) where kept, else 0, in x's dtype.

        ``rng`` is this backend's generator (:meth:`rng`); each element is kept with probability 1 - ratio.
        """
        draw = precision.compute_dtype(x.dtype)  # the generators draw float32 or float64 only
        keep = rng.random(x.shape, dtype=draw) >= ratio
        mask = keep * x.dtype.type(1.0 / (1.0 - ratio))
        return x * mask, mask

    # -- loss --------------------------------------------------------------------------------
    def softmax_cross_entropy(self, y, t, ws=None, reuse=False):
        """Mean cross-entropy of softmax(y) against integer labels: ``(loss 0-d, p (N, K))``.

        y (N, K) scores; t (N,) integer labels in [0, K). Computed in :func:`xpnet.precision.compute_dtype`
        of y (float32 for float16), which is the dtype of ``loss`` and ``p``. ``ws``: a dict the caller
        owns, where a backend may keep ``p`` (the caller's cache: the previous one is done with) and, when
        ``reuse``, the loss (the caller is done with the previous one).
        """
        xp = self.xp
        y = precision.widen(y)
        s = y - y.max(axis=1, keepdims=True)
        logp = s - xp.log(xp.exp(s).sum(axis=1, keepdims=True))
        loss = -xp.take_along_axis(logp, t[:, None].astype(xp.intp), axis=1).sum() / y.dtype.type(y.shape[0])
        return loss, xp.exp(logp)

    def softmax_cross_entropy_backward(self, p, t, dout, out_dtype, ws=None, reuse=False):
        """dL/dy of :meth:`softmax_cross_entropy` times ``dout`` (a Python number), in ``out_dtype``; ``ws``,
        ``reuse`` as in :meth:`conv2d_forward`."""
        N = p.shape[0]
        dy = p.copy()
        dy[self.xp.arange(N), t] -= 1
        return (dy * p.dtype.type(dout / N)).astype(out_dtype, copy=False)

    # -- optimizer ---------------------------------------------------------------------------
    #: True when :meth:`fused_update` runs an optimizer rule as one kernel over a flat buffer.
    fused_optimizer = False

    def fused_update(self, rule, p, g, state, scalars, lr, step, sumsq=None, ws=None):
        """One optimizer step over flat buffers in one kernel; False when this backend has none (the
        optimizer then runs its per-parameter rule over the flat buffers, the same arithmetic).

        Args:
            rule: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``, ``"adamw"``.
            p: flat parameters (updated in place). g: flat gradients (read only), same shape and dtype.
            state: the rule's flat state arrays by name (updated in place).
            scalars: ``(l2_weight_decay, clip_norm or 0, *rule's hyperparameters)``, the same every step.
            lr: this step's learning rate. step: this step's number (1 for the first), by the parameters'
                own counters where the rule keeps them (Adam's bias correction).
            sumsq: device scalar, the sum of squares of all gradients (needed when clipping).
            ws: a dict the caller keeps with this buffer's state, for the backend's per-buffer data (the
                step's values on the device); a fresh one makes the backend start from ``lr`` and ``step``.
        """
        return False

    # -- collectives (what xpnet.distributed needs from a device; host_memory: MPI reduces in place) --
    def host_buffer(self, size, dtype):
        """A 1-d host array for staging ``size`` elements (pinned memory on a GPU)."""
        return np.empty(int(size), dtype)

    def copy_to_host(self, a, out):
        """Copy array ``a`` of this backend into the host array ``out`` (synchronously); returns ``out``."""
        np.copyto(out, a)
        return out

    def copy_from_host(self, host, a):
        """Copy the host array ``host`` into array ``a`` of this backend, in place; returns ``a``."""
        np.copyto(a, host)
        return a

    def device_key(self):
        """What identifies this process's device among the ranks on one node (None: host memory)."""
        return None

    def nccl_version(self):
        """NCCL's version when NCCL can reduce this backend's arrays, else None."""
        return None

    def nccl_unique_id(self):
        """A new NCCL unique id (rank 0 makes it, MPI carries it to the others)."""
        raise BackendError(f"backend '{self.name}' has no NCCL; NCCL reduces GPU arrays")

    def nccl_communicator(self, size, uid, rank):
        """An NCCL communicator with ``allreduce_(buf)`` and ``bcast_(buf, root)`` for this backend's arrays."""
        raise BackendError(f"backend '{self.name}' has no NCCL; NCCL reduces GPU arrays")

    # -- counting ----------------------------------------------------------------------------
    def launch_counter(self):
        """An object whose ``counting()`` context counts the device work queued inside it (launches,
        allocations, syncs; see ``backends/cuda_graph_counts.py``), or None where this device has none."""
        return None

    # -- errors ------------------------------------------------------------------------------
    def is_out_of_memory(self, exc):
        """True when ``exc`` means this device ran out of memory (the CPU never says so: False)."""
        return False

    # -- description -------------------------------------------------------------------------
    def info(self):
        """A dict describing the device and library versions."""
        return {"backend": self.name, "device": self.device}

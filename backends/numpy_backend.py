"""The NumPy backend: host arrays; convolutions in numpy_conv, batch-split kernels in numpy_split."""

import os
import platform

import numpy as np

from xpnet import precision
from xpnet.backends import direct_conv, numpy_batchnorm, numpy_im2col, numpy_split
from xpnet.backends.base import Backend
from xpnet.backends.base_conv import store
from xpnet.backends.cpu_threads import BatchSplitter
from xpnet.backends.numpy_conv_plan import ALGORITHMS, plan_for, plan_of, transposed_geometry
from xpnet.backends.stage_clock import StageClock


def _conv_algorithm(conv):
    """The convolution algorithm asked for (``XPNET_CONV`` where ``conv`` is None), checked."""
    if conv is None:
        conv = os.environ.get("XPNET_CONV", "").strip().lower() or "auto"
    if conv not in ALGORITHMS:
        raise ValueError(f"XPNET_CONV must be one of {', '.join(ALGORITHMS)}, got {conv!r}")
    if conv == "direct" and direct_conv.unavailable():
        raise ValueError(f"convolution algorithm 'direct' asked for, but {direct_conv.unavailable()}")
    return conv


class NumpyRNG:
    """PCG64 generator whose state round-trips through JSON (for bit-identical resume)."""

    def __init__(self, seed=None):
        self.gen = np.random.Generator(np.random.PCG64(seed))

    def random(self, shape, dtype=np.float32):
        return self.gen.random(shape, dtype=dtype)

    def standard_normal(self, shape, dtype=np.float32):
        return self.gen.standard_normal(shape, dtype=dtype)

    def get_state(self):
        return self.gen.bit_generator.state

    def set_state(self, state):
        self.gen.bit_generator.state = state


def cpu_model():
    """The CPU's name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class NumpyBackend(Backend):
    """Arrays in host memory through NumPy."""

    name = "numpy"
    device = "cpu"
    xp = np
    host_memory = True
    _splitter = None

    def __init__(self, conv=None):
        """``conv``: the convolution algorithm, "auto" (default), "direct" or "im2col" (see numpy_conv_plan);
        None reads ``XPNET_CONV``."""
        self.conv = _conv_algorithm(conv)
        self._clock = StageClock()

    def preferred_eval_batch_size(self, train_batch_size=None):
        """The training batch size: the convolutions' workspaces are then reused, not re-allocated."""
        return train_batch_size or 1000

    @property
    def splitter(self):
        """The BatchSplitter that runs convolutions' batch slices in threads (``XPNET_NUM_THREADS``)."""
        if self._splitter is None:
            self._splitter = BatchSplitter()
        return self._splitter

    def asarray(self, a, dtype=None):
        if type(a).__module__.startswith("cupy"):
            a = a.get()
        return np.asarray(a, dtype=dtype)

    def asnumpy(self, a):
        if type(a).__module__.startswith("cupy"):
            return a.get()
        return np.asarray(a)

    def rng(self, seed=None):
        return NumpyRNG(seed)

    def im2col(self, x, KH, KW, stride=(1, 1), pad=(0, 0), pad_value=0):
        return numpy_im2col.im2col(x, KH, KW, stride, pad, pad_value)

    def col2im(self, col, x_shape, KH, KW, stride=(1, 1), pad=(0, 0)):
        return numpy_im2col.col2im(col, x_shape, KH, KW, stride, pad)

    def conv2d_forward(self, x, W, b, stride, pad, ws=None, keep=True, relu=False, reuse=False, pool=None):
        """By the layer shape's plan (see numpy_conv_plan), kept in ``ws``: the compiled direct convolution
        or strided-copy im2col + BLAS GEMMs; then the fused ReLU / max pool as the backend's own ops."""
        plan = plan_for(ws, x, W, stride, pad, self.splitter, self._clock, self.conv)
        if relu and plan.fuses_relu:  # the ReLU in the plan's kernels; its backward there too (conv2d_backward)
            out, cache = plan.forward(x, W, b, keep, relu=True)
            return self._activated(out, cache, False, pool)
        out, cache = plan.forward(x, W, b, keep)
        return self._activated(out, cache, relu, pool)

    def conv2d_backward(self, dout, cache, W, stride, pad, ws=None, input_grad=True, out=None, reuse=False):
        """Gradients ``(dx, dW, db)`` of :meth:`conv2d_forward`, by the plan that ran it."""
        dout, cache = self._deactivated(dout, cache)
        dx, dW, db = cache.plan.backward(dout, cache, W, input_grad)
        return dx, *store(out, dW, db)

    def conv2d_transpose_forward(self, x, W, b, stride, pad, output_pad, ws=None):
        """By the plan (kept in ``ws``) of the convolution that maps the output's shape back to x's (see
        numpy_conv_plan.transposed_geometry): its input gradient, then the bias."""
        plan = plan_of(ws, transposed_geometry(x.shape, W.shape, stride, pad, output_pad), x.dtype, self.splitter,
                       self._clock, self.conv)
        out = plan.input_grad(x, W)
        out += b.reshape(1, -1, 1, 1)
        return out, (plan, x)

    def conv2d_transpose_backward(self, dout, cache, W, stride, pad, ws=None, input_grad=True):
        """Gradients of :meth:`conv2d_transpose_forward` by the plan that ran it: dx is its forward of dout
        (no bias), dW its dW with dout as the input and x as the output's gradient."""
        plan, x = cache
        if input_grad:  # forward then backward: im2col plans make dout's columns once for both
            dx, conv_cache = plan.forward(dout, W, None, keep=True)
            dW = plan.backward(x, conv_cache, W, input_grad=False)[1]
        else:
            dx, dW = None, plan.weight_grad(dout, x)[0]
        db = dout.sum(axis=(0, 2, 3), dtype=precision.compute_dtype(dout.dtype)).astype(dout.dtype, copy=False)
        return dx, dW, db

    def conv_stages(self):
        """Record the stages of the convolutions run inside: ``with be.conv_stages() as ms: ...``.

        ``ms`` fills on exit with ``{stage: ms}``: "im2col" and "gemm" (forward), "gemm dW", "gemm dx" and
        "col2im" (backward), and "dx: im2col" / "dx: gemm" where dx is a full convolution of dout; each
        summed over the calls and averaged over the batch slices that ran it (see numpy_conv_plan).
        """
        return self._clock.recording()

    def maxpool2d_forward(self, x, KH, KW, stride, pad, OH, OW, ws=None, reuse=False):
        return numpy_split.max_forward(self.splitter, x, KH, KW, stride, pad, OH, OW)

    def maxpool2d_backward(self, dout, cache, x_shape, KH, KW, stride, pad, ws=None, reuse=False):
        return numpy_split.max_backward(self.splitter, dout, cache, x_shape, KH, KW, stride, pad)

    def avgpool2d_forward(self, x, KH, KW, stride, pad, OH, OW):
        return numpy_split.avg_forward(self.splitter, x, KH, KW, stride, pad, OH, OW)

    def avgpool2d_backward(self, dout, x_shape, KH, KW, stride, pad):
        return numpy_split.avg_backward(self.splitter, dout, x_shape, KH, KW, stride, pad)

    def matmul(self, a, b):
        return numpy_split.matmul(self.splitter, a, b)

    def relu(self, x):
        if x.ndim < 2:
            return super().relu(x)
        return numpy_split.relu(self.splitter, x)

    def relu_forward(self, x):
        if x.ndim < 2:
            return super().relu_forward(x)
        return numpy_split.relu_forward(self.splitter, x)

    def relu_backward(self, dout, mask):
        if dout.ndim < 2:
            return super().relu_backward(dout, mask)
        return numpy_split.relu_backward(self.splitter, dout, mask)

    def leaky_relu(self, x, slope):
        if x.ndim < 2:
            return super().leaky_relu(x, slope)
        return numpy_split.leaky_relu(self.splitter, x, slope)

    def leaky_relu_forward(self, x, slope):
        if x.ndim < 2:
            return super().leaky_relu_forward(x, slope)
        return numpy_split.leaky_relu_forward(self.splitter, x, slope)

    def leaky_relu_backward(self, dout, mask, slope):
        if dout.ndim < 2:
            return super().leaky_relu_backward(dout, mask, slope)
        return numpy_split.leaky_relu_backward(self.splitter, dout, mask, slope)

    def batchnorm_forward(self, x, gamma, beta, eps, stats=None):
        if numpy_batchnorm.takes(x, gamma, beta):
            return numpy_batchnorm.forward(self.splitter, x, gamma, beta, eps, stats)
        return super().batchnorm_forward(x, gamma, beta, eps, stats)

    def batchnorm_backward(self, dout, cache, gamma):
        if isinstance(cache, numpy_batchnorm.Kept):
            return numpy_batchnorm.backward(self.splitter, dout, cache, gamma)
        return super().batchnorm_backward(dout, cache, gamma)

    def info(self):
        cfg = {}
        try:
            cfg = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        except Exception:  # older NumPy: show_config has no dict mode
            pass
        return {
            "backend": self.name,
            "device": cpu_model(),
            "cores": os.cpu_count(),
            "numpy": np.__version__,
            "blas": f"{cfg.get('name', 'unknown')} {cfg.get('version', '')}".strip(),
            "threads": f"{self.splitter.threads} (batch slices in threads; XPNET_NUM_THREADS)",
            "conv": self.conv_description(),
        }

    def conv_description(self):
        """The convolution algorithm in a few words: what "auto" picks here, and why not direct if not."""
        why = direct_conv.unavailable()
        if self.conv == "im2col" or why is not None:
            return "im2col + BLAS" + (f" (direct convolution unavailable: {why})" if why and self.conv != "im2col"
                                       else "")
        return ("direct (compiled, AVX-512) for float32 stride-1 layers and, by space-to-depth, strided ones whose "
                "stride divides the filter; im2col + BLAS for the rest")

"""The CUDA backend: CuPy arrays on the current NVIDIA device, with xpnet's own kernels."""

import base64

import numpy as np

from xpnet.backends import cuda_timing
from xpnet.backends.base import Backend
from xpnet.backends.cuda_collectives import CudaCollectives
from xpnet.backends.cuda_fused import CudaFusedLayers
from xpnet.backends.cuda_optim import CudaFusedOptimizer
from xpnet.backends.shapes import out_size
from xpnet.errors import BackendError

_INSTALL = 'install CuPy for your CUDA version: pip install "xpnet[cuda12]" (or "xpnet[cuda13]")'


def _import_cupy(cupy=None):
    if cupy is None:
        try:
            import cupy
        except ImportError as e:
            raise BackendError(f"backend 'cuda' needs CuPy, which is not installed ({e}); {_INSTALL}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # driver missing, no device, or a broken CUDA install
        raise BackendError(
            f"backend 'cuda': CuPy {cupy.__version__} is installed but no usable CUDA device was found "
            f"({type(e).__name__}: {e}); check the NVIDIA driver with nvidia-smi"
        ) from None
    if count < 1:
        raise BackendError(
            f"backend 'cuda': CuPy {cupy.__version__} is installed but no usable CUDA device was found "
            "(0 devices); check the NVIDIA driver with nvidia-smi"
        )
    return cupy


def _channels_last(x):
    """True when an (N, C, H, W) array is stored (N, H, W, C)-contiguous (a convolution's output)."""
    return not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous


def _cuda_major(cupy):
    try:
        return str(cupy.cuda.runtime.runtimeGetVersion() // 1000)
    except Exception:
        return "12"


def check_compiler(cupy, probe):
    """Compile and run ``probe`` (cuda_kernels.PROBE), so a missing NVRTC or missing CUDA headers is found at
    backend start.

    A driver-only machine runs CuPy's precompiled code but cannot compile a kernel: without this check
    training would die at its first convolution. Raises BackendError naming what is missing and the
    package that brings it.
    """
    major = _cuda_major(cupy)
    try:
        probe(cupy.zeros(1, dtype=cupy.float32))
    except Exception as e:
        text = str(e)
        if "cannot open source file" in text or '.h"' in text:
            what = "the CUDA headers are missing"
        elif "nvrtc" in text.lower():
            what = f"NVRTC (libnvrtc, CUDA {major}) is not loadable"
        else:
            what = "a one-line test kernel failed"
        raise BackendError(f"backend 'cuda': CuPy {cupy.__version__} cannot compile kernels here: {what} "
                           f"({type(e).__name__}: {_first_line(e)}); pip install \"cupy-cuda{major}x[ctk]\" "
                           f"(or \"xpnet[cuda{major}]\"), which brings NVRTC and the CUDA headers from PyPI, or "
                           "install the CUDA Toolkit") from None


def _first_line(exc):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return message[:200]


class CudaTimer:
    """Times device work with CUDA events (elapsed_ms is the GPU time between the two events)."""

    def __init__(self, cupy):
        self._cp = cupy

    def __enter__(self):
        self._start = self._cp.cuda.Event()
        self._end = self._cp.cuda.Event()
        self._start.record()
        return self

    def __exit__(self, *exc):
        self._end.record()
        self._end.synchronize()
        self.elapsed_ms = self._cp.cuda.get_elapsed_time(self._start, self._end)
        return False


class CupyRNG:
    """Device-side random numbers from CuPy's generator, with a state that can be saved and restored.

    The generator is cuRAND's XORWOW with a fixed number of states (not CuPy's default, which scales
    with the GPU's multiprocessor count), so a seed gives the same numbers on every GPU and the saved
    state is small: ``_STATES`` x 48 bytes, base64 in the checkpoint's JSON. Fused kernels (dropout)
    draw from a second, counter-based stream: number k is a hash of (key, k), so the state is the key,
    from the seed, and the count already drawn (``offset``); both are saved with the XORWOW state. The
    count lives on the device too (``reserve`` moves it on there, so the kernels' arguments are the same
    every step); the host keeps the same count without reading it back.
    """

    _STATES = 2**14

    def __init__(self, cupy, reserve_kernel, seed=None):
        self._cp = cupy
        self.gen = cupy.random.Generator(cupy.random.XORWOW(seed, size=self._STATES))
        # the counter-based stream fused kernels draw from (dropout): a key from the seed, an offset
        self.key = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        self.offset = 0
        self._reserve = reserve_kernel
        self._next = cupy.zeros(1, dtype=np.uint64)  # the device's copy of offset

    def reserve(self, n, slot):
        """The key for ``n`` numbers of the counter-based stream, whose first offset the device writes into
        ``slot`` (a 1-element uint64 device array the drawing kernels read); the next call gets the ones
        after. One launch with the same arguments for the same ``(n, slot)``."""
        self._reserve(np.uint64(n), self._next, slot, size=1)
        self.offset += int(n)
        return self.key

    def random(self, shape, dtype=np.float32):
        return self.gen.random(shape, dtype=dtype)

    def standard_normal(self, shape, dtype=np.float32):
        return self.gen.standard_normal(shape, dtype=dtype)

    def get_state(self):
        """The generator's device state, copied to the host as a JSON-serialisable dict (a sync)."""
        raw = self._cp.asnumpy(self.gen.bit_generator._state)
        return {"bit_generator": "XORWOW", "state": base64.b64encode(raw.tobytes()).decode("ascii"),
                "counter": [str(self.key), str(self.offset)]}

    def set_state(self, state):
        """Restore a state from :meth:`get_state`; ValueError for any other kind of state."""
        target = self.gen.bit_generator._state
        kind = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
        raw = np.frombuffer(base64.b64decode(state["state"]), dtype=np.int8) if kind == "XORWOW" else None
        if raw is None or raw.size != target.size:
            raise ValueError(f"a CUDA random state must be a XORWOW state of {target.size} bytes, got "
                             f"{kind if raw is None else f'one of {raw.size} bytes'}")
        target[...] = self._cp.asarray(raw)
        if "counter" in state:  # states saved before the counter stream existed keep the current one
            self.key, self.offset = (int(v) for v in state["counter"])
            self._next.set(np.array([self.offset], dtype=np.uint64), stream=self._cp.cuda.get_current_stream())


class CudaBackend(CudaFusedLayers, CudaFusedOptimizer, CudaCollectives, Backend):
    """Arrays on an NVIDIA GPU through CuPy.

    Args:
        cupy: the CuPy module to use (default: ``import cupy``); anything with CuPy's API, such as an
            emulated device, runs the same code.
    """

    name = "cuda"

    def __init__(self, cupy=None):
        cupy = _import_cupy(cupy)
        from xpnet.backends import cuda_kernels

        self.xp = cupy
        self._kernels = cuda_kernels.build(cupy)  # compiled at first use
        check_compiler(cupy, self._kernels.probe_kernel)
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        self.device = f"cuda:{dev.id} ({name.decode() if isinstance(name, bytes) else name})"

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def asnumpy(self, a):
        return self.xp.asnumpy(a)

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()

    def timer(self):
        return CudaTimer(self.xp)

    def timeline(self, hold_ms=0.0):
        if getattr(self, "_spinner", None) is None:
            self._spinner = cuda_timing.Spinner(self.xp, self._kernels.spin_kernel)
        return cuda_timing.CudaTimeline(self.xp, self._spinner, hold_ms)

    def rng(self, seed=None):
        return CupyRNG(self.xp, self._kernels.reserve, seed)

    def im2col(self, x, KH, KW, stride=(1, 1), pad=(0, 0), pad_value=0):
        """(N, C, H, W) -> (N*OH*OW, C*KH*KW), columns ordered (c, kh, kw) as in the book."""
        N, C, H, W = x.shape
        OH, OW = out_size(H, W, KH, KW, stride, pad)
        col = self.xp.empty((N * OH * OW, C * KH * KW), dtype=x.dtype)
        return self._im2col_into(x, KH, KW, stride, pad, pad_value, col)

    def _im2col_into(self, x, KH, KW, stride, pad, pad_value, col):
        _, C, H, W = x.shape
        (SH, SW), (PH, PW) = stride, pad
        OH, OW = out_size(H, W, KH, KW, stride, pad)
        self._kernels.im2col_kernel(
            x, C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, x.dtype.type(pad_value), col
        )
        return col

    def col2im(self, col, x_shape, KH, KW, stride=(1, 1), pad=(0, 0), out=None):
        """Sum windows back into (N, C, H, W) (into ``out`` if given): one thread per image element (a gather)."""
        N, C, H, W = x_shape
        (SH, SW), (PH, PW) = stride, pad
        OH, OW = out_size(H, W, KH, KW, stride, pad)
        col = self.xp.ascontiguousarray(col)
        img = self.xp.empty((N, C, H, W), dtype=col.dtype) if out is None else out
        self._kernels.col2im_kernel(col, C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, img)
        return img

    def maxpool2d_forward(self, x, KH, KW, stride, pad, OH, OW, ws=None, reuse=False):
        """One kernel: the maxima and, as the cache, each window's argmax (an int32 index in its plane, kept
        in ``ws``)."""
        N, C, H, W = x.shape
        (SH, SW), (PH, PW) = stride, pad
        out = self._scratch(ws if reuse else None, "out", (N, C, OH, OW), x.dtype)
        arg = self._scratch(ws, "arg", (N, C, OH, OW), np.dtype(np.int32))
        self._kernels.maxpool_forward(x, H, W, OH, OW, KH, KW, SH, SW, PH, PW, out, arg)  # x: any order
        return out, (arg, _channels_last(x))

    def maxpool2d_backward(self, dout, cache, x_shape, KH, KW, stride, pad, ws=None, reuse=False):
        """One kernel: each input element gathers the gradients of the windows whose maximum it is."""
        N, C, H, W = x_shape
        arg, channels_last = cache
        _, _, OH, OW = arg.shape
        (SH, SW), (PH, PW) = stride, pad
        # dx in the input's memory order: a convolution's output (channels last) then needs no transpose
        keep = ws if reuse else None
        dx = (self._scratch(keep, "dx_cl", (N, H, W, C), dout.dtype).transpose(0, 3, 1, 2) if channels_last
              else self._scratch(keep, "dx", x_shape, dout.dtype))
        self._kernels.maxpool_backward(dout, arg, H, W, OH, OW, KH, KW, SH, SW, PH, PW, dx)
        return dx

    def relu_forward(self, x):
        """One kernel for the output and the mask, both in x's memory order."""
        y, mask = self.xp.empty_like(x), self.xp.empty_like(x, dtype=bool)
        self._kernels.relu_forward(x, y, mask)
        return y, mask

    def relu_backward(self, dout, mask):
        """``dout`` where the mask is set, in the mask's memory order (a convolution's, for its backward)."""
        dx = self.xp.empty_like(mask, dtype=dout.dtype)
        self.xp.multiply(dout, mask, out=dx)
        return dx

    def gather_batch(self, x, t, idx, ws=None, start=0, count=None):
        """One kernel for the examples and their labels (two takes when a label row is longer than an example);
        into the buffers kept in ``ws`` when given, with the position read on the device (:meth:`_position`)."""
        n, count = len(x), len(idx) - start if count is None else count
        row, trow = (x.size // n if n else 0), (t.size // n if n else 0)
        if not n or not count or trow > row:
            return super().gather_batch(x, t, idx, start=start, count=count)
        xb = self._scratch(ws, "x", (count, *x.shape[1:]), x.dtype)
        tb = self._scratch(ws, "t", (count, *t.shape[1:]), t.dtype)
        idx, at = self._position(idx, start, count, ws)
        self._kernels.batch_gather(self.xp.ascontiguousarray(x), idx, at, self.xp.ascontiguousarray(t), row, trow,
                                   xb, tb)
        return xb, tb

    def _position(self, idx, start, count, ws):
        """``(indices, word)``: the device word holds ``start``. With ``ws``, the indices are copied once into
        its buffer and the position moves on on the device (``reserve``: the same arguments every
        batch); the host writes it only when the caller did not continue where the last batch ended."""
        if ws is None:
            return idx, self.xp.asarray(np.array([start], dtype=np.uint64))
        if ws.get("order_of") is not idx:  # a new epoch's order: into the kept buffer (one copy)
            self.xp.copyto(self._scratch(ws, "order", idx.shape, idx.dtype), idx)
            ws["order_of"], ws["next_held"] = idx, None
        nxt = self._scratch(ws, "next", (1,), np.dtype(np.uint64))
        at = self._scratch(ws, "start", (1,), np.dtype(np.uint64))
        if ws["next_held"] != start:
            nxt.set(np.array([start], dtype=np.uint64), stream=self.xp.cuda.get_current_stream())
        self._kernels.reserve(np.uint64(count), nxt, at, size=1)
        ws["next_held"] = start + count
        return ws["order"], at

    def dropout_forward(self, x, ratio, rng):
        """One kernel: the mask from the generator's counter-based stream (:meth:`CupyRNG.reserve`) and x * mask."""
        slot = self.xp.empty(1, dtype=np.uint64)
        key = rng.reserve(x.size, slot)
        y, mask = self.xp.empty_like(x), self.xp.empty_like(x)
        scale = x.dtype.type(1.0 / (1.0 - ratio))
        self._kernels.dropout_forward(x, np.uint64(key), slot, float(ratio), scale, y, mask)
        return y, mask

    def softmax_cross_entropy_backward(self, p, t, dout, out_dtype, ws=None, reuse=False):
        """One kernel: (p - onehot(t)) * dout / N in ``out_dtype``."""
        N, K = p.shape
        dy = self._scratch(ws if reuse else None, "dy", (N, K), np.dtype(out_dtype))
        self._kernels.softmax_xent_backward(p, t, K, p.dtype.type(dout / N), dy)
        return dy

    def launch_counter(self):
        """A :class:`~xpnet.backends.cuda_graph_counts.GraphCounter`: counts by CUDA graph capture."""
        from xpnet.backends.cuda_graph_counts import GraphCounter

        return GraphCounter(self.xp)

    def is_out_of_memory(self, exc):
        """True when ``exc`` is CuPy's out-of-memory error (a failed device allocation)."""
        return isinstance(exc, self.xp.cuda.memory.OutOfMemoryError)

    def info(self):
        cp = self.xp
        free, total = cp.cuda.runtime.memGetInfo()
        dev = cp.cuda.Device()
        return {
            "backend": self.name,
            "device": self.device,
            "compute_capability": dev.compute_capability,
            "memory_free_gib": round(free / 2**30, 2),
            "memory_total_gib": round(total / 2**30, 2),
            "cupy": cp.__version__,
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cp.cuda.runtime.driverGetVersion(),
        }

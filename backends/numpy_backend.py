"""The NumPy backend: host arrays, im2col as one strided-view copy, col2im as KH*KW strided adds."""

import os
import platform

import numpy as np
from numpy.lib.stride_tricks import as_strided

from xpnet.backends.base import Backend


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


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _padded(x, PH, PW, pad_value):
    if not (PH or PW):
        return x
    return np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), mode="constant", constant_values=pad_value)


def _windows(xpad, KH, KW, SH, SW, OH, OW):
    """View (N, OH, OW, C, KH, KW) of every window; no copy."""
    N, C = xpad.shape[:2]
    sN, sC, sH, sW = xpad.strides
    return as_strided(xpad, (N, OH, OW, C, KH, KW), (sN, sH * SH, sW * SW, sC, sH, sW), writeable=False)


def _inside(k, S, P, O, size):
    """For tap k: the input slice it touches and the output slice that lands inside (not in padding)."""
    o0 = max(0, -(-(P - k) // S))  # first output index whose input o*S - P + k is >= 0
    o1 = min(O, (size - 1 + P - k) // S + 1)  # one past the last whose input is < size
    if o1 <= o0:
        return slice(0, 0), slice(0, 0)
    i0 = o0 * S - P + k
    return slice(i0, i0 + S * (o1 - o0 - 1) + 1, S), slice(o0, o1)


def _buffer(ws, key, shape, dtype):
    """A reusable scratch array from the caller's workspace dict (fresh when no dict is given)."""
    if ws is None:
        return np.empty(shape, dtype)
    buf = ws.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = ws[key] = np.empty(shape, dtype)
    return buf


class NumpyBackend(Backend):
    """Arrays in host memory through NumPy."""

    name = "numpy"
    device = "cpu"
    xp = np

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
        """(N, C, H, W) -> (N*OH*OW, C*KH*KW), columns ordered (c, kh, kw) as in the book."""
        N, C, H, W = x.shape
        (SH, SW), (PH, PW) = stride, pad
        OH = (H + 2 * PH - KH) // SH + 1
        OW = (W + 2 * PW - KW) // SW + 1
        view = _windows(_padded(x, PH, PW, pad_value), KH, KW, SH, SW, OH, OW)
        return view.reshape(N * OH * OW, C * KH * KW)

    def col2im(self, col, x_shape, KH, KW, stride=(1, 1), pad=(0, 0)):
        """Inverse of im2col's scatter: sums overlapping windows, in (kh, kw) order."""
        N, C, H, W = x_shape
        (SH, SW), (PH, PW) = stride, pad
        OH = (H + 2 * PH - KH) // SH + 1
        OW = (W + 2 * PW - KW) // SW + 1
        cols = col.reshape(N, OH, OW, C, KH, KW).transpose(0, 3, 4, 5, 1, 2)  # (N, C, KH, KW, OH, OW)
        img = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
        for kh in range(KH):
            for kw in range(KW):
                img[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW] += cols[:, :, kh, kw]
        if PH or PW:
            img = np.ascontiguousarray(img[:, :, PH : PH + H, PW : PW + W])
        return img

    def conv2d_forward(self, x, W, b, stride, pad, ws=None):
        """Channel-major im2col (N, C*KH*KW, OH*OW) and a batched W @ col: NCHW out, no transposes.

        Each of the KH*KW copies moves whole rows, and ``ws`` keeps the column buffer between steps
        (fresh 10-100 MB arrays cost more in page faults than the copy itself).
        """
        N, C, H, Wd = x.shape
        FN, _, KH, KW = W.shape
        (SH, SW), (PH, PW) = stride, pad
        OH, OW = (H + 2 * PH - KH) // SH + 1, (Wd + 2 * PW - KW) // SW + 1
        xpad = _padded(x, PH, PW, 0)
        col = _buffer(ws, "col", (N, C, KH, KW, OH, OW), x.dtype)
        for kh in range(KH):
            for kw in range(KW):
                col[:, :, kh, kw] = xpad[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW]
        col = col.reshape(N, C * KH * KW, OH * OW)
        out = np.matmul(W.reshape(FN, -1), col)
        out += b.reshape(1, FN, 1)
        return out.reshape(N, FN, OH, OW), (col, x.shape)

    def conv2d_backward(self, dout, cache, W, stride, pad, ws=None):
        """Batched GEMMs for dW and dcol, then col2im as KH*KW strided adds of whole rows."""
        col, (N, C, H, Wd) = cache
        FN, _, KH, KW = W.shape
        (SH, SW), (PH, PW) = stride, pad
        OH, OW = (H + 2 * PH - KH) // SH + 1, (Wd + 2 * PW - KW) // SW + 1
        d = dout.reshape(N, FN, OH * OW)
        db = d.sum(axis=(0, 2))
        dW = np.matmul(d, col.transpose(0, 2, 1)).sum(axis=0).reshape(W.shape)
        dcol = _buffer(ws, "dcol", (N, C * KH * KW, OH * OW), dout.dtype)
        np.matmul(W.reshape(FN, -1).T, d, out=dcol)
        dcol = dcol.reshape(N, C, KH, KW, OH, OW)
        img = np.zeros((N, C, H, Wd), dtype=dout.dtype)
        for kh in range(KH):
            rows, orows = _inside(kh, SH, PH, OH, H)
            for kw in range(KW):
                cols, ocols = _inside(kw, SW, PW, OW, Wd)
                img[:, :, rows, cols] += dcol[:, :, kh, kw, orows, ocols]
        return img, dW, db

    def info(self):
        cfg = {}
        try:
            cfg = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        except Exception:  # older NumPy: show_config has no dict mode
            pass
        return {
            "backend": self.name,
            "device": _cpu_model(),
            "cores": os.cpu_count(),
            "numpy": np.__version__,
            "blas": f"{cfg.get('name', 'unknown')} {cfg.get('version', '')}".strip(),
        }

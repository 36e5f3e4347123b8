"""Upsampling by an integer factor: bilinear (half-pixel centres) or nearest neighbour."""

import numpy as np

from xpnet import backends
from xpnet.layers.base import Layer
from xpnet.utils import pair


def interpolation_matrix(size, scale, mode):
    """(size * scale, size) float64 matrix ``A`` with ``out = A @ x`` resizing one axis by ``scale``.

    Bilinear uses half-pixel centres (source coordinate ``(i + 0.5) / scale - 0.5``, clamped to the
    edge), the convention of PyTorch's ``align_corners=False`` and OpenCV's ``resize``.
    """
    out = size * scale
    A = np.zeros((out, size))
    rows = np.arange(out)
    if mode == "nearest":
        A[rows, rows // scale] = 1.0
        return A
    src = np.clip((rows + 0.5) / scale - 0.5, 0, size - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, size - 1)
    frac = src - i0
    np.add.at(A, (rows, i0), 1 - frac)
    np.add.at(A, (rows, i1), frac)
    return A


class Upsample2D(Layer):
    """Enlarge H and W by integer factors with fixed (not learned) interpolation.

    Both axes are resized by one small matrix product each, ``A_h @ x @ A_w.T``; backward is the same
    with the transposed matrices.

    Args:
        scale: int or (SH, SW) >= 1. mode: ``"bilinear"`` (default) or ``"nearest"``.

    Shapes:
        x (N, C, H, W) -> (N, C, H * SH, W * SW).
    """

    MODES = ("bilinear", "nearest")

    def __init__(self, scale=2, mode="bilinear"):
        super().__init__()
        self.scale = pair(scale, "scale")
        if min(self.scale) < 1:
            raise ValueError(f"Upsample2D: scale must be >= 1, got {scale!r}")
        if mode not in self.MODES:
            raise ValueError(f"Upsample2D: mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode = mode
        self._matrices = {}

    def extra_repr(self):
        return f"scale={self.scale}, mode={self.mode!r}"

    def _get(self, x):
        be, (H, W) = backends.of(x), x.shape[2:]
        key = (be.name, H, W, x.dtype.str)
        if key not in self._matrices:
            self._matrices[key] = tuple(be.asarray(interpolation_matrix(n, s, self.mode), dtype=x.dtype)
                                        for n, s in ((H, self.scale[0]), (W, self.scale[1])))
        return self._matrices[key]

    def forward(self, x, train=False):
        self.check_input(x, 4, "(N, C, H, W)")
        self.Ah, self.Aw = self._get(x)
        N, C, H, W = self.x_shape = x.shape
        self.out_shape = (N, C, H * self.scale[0], W * self.scale[1])
        return (self.Ah @ x) @ self.Aw.T

    def backward(self, dout):
        self.check_grad(dout, self.out_shape)
        return (self.Ah.T @ dout) @ self.Aw

"""Local response normalisation across channels (Krizhevsky, Sutskever & Hinton 2012, section 3.3)."""

from xpnet import precision
from xpnet.errors import ShapeError
from xpnet.layers.base import Layer, xp_of


def _window_sum(a, lo, hi):
    """Sum of ``a[:, c - lo : c + hi + 1]`` along the channel axis for every c (zeros outside).

    Args:
        a: (N, C, H, W) array. lo, hi: how many channels below and above c the window reaches.

    Returns:
        (N, C, H, W) array of a's dtype.
    """
    out = a.copy()
    for d in range(1, min(lo, a.shape[1] - 1) + 1):
        out[:, d:] += a[:, :-d]  # channel c - d into c
    for d in range(1, min(hi, a.shape[1] - 1) + 1):
        out[:, :-d] += a[:, d:]  # channel c + d into c
    return out


class LocalResponseNormalization(Layer):
    """``y_c = x_c / (k + alpha * sum_{j in window(c)} x_j^2) ** beta`` with a window of ``size`` channels.

    The window of channel c runs from ``c - size // 2`` to ``c + (size - 1) // 2``, clipped to the
    existing channels. As in the paper, ``alpha`` multiplies the plain sum; Caffe and PyTorch divide
    it by ``size`` first (pass ``alpha * size`` here to match them). No learnable parameters.

    Args:
        size: n, the number of adjacent channels summed (5 in AlexNet).
        alpha: scale of the sum of squares (1e-4). beta: exponent (0.75). k: additive constant (2).

    Half precision: for float16 input the sum of squares and the powers are computed in float32
    (squares overflow float16 above |x| = 256) and the output and dL/dx are cast back to float16.

    Shapes:
        x (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        if int(size) != size or size < 1:
            raise ValueError(f"LocalResponseNormalization: size must be a positive int, got {size!r}")
        if not k > 0 or alpha < 0 or beta < 0:
            raise ValueError(f"LocalResponseNormalization: need k > 0, alpha >= 0 and beta >= 0, got "
                             f"k={k!r}, alpha={alpha!r}, beta={beta!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        self.lo, self.hi = self.size // 2, (self.size - 1) // 2

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def forward(self, x, train=False):
        self.check_input(x, 4, "(N, C, H, W)")
        if x.shape[1] < 1:
            raise ShapeError(f"{self._label()}: expected at least one channel, got shape {tuple(x.shape)}")
        xp = xp_of(x)
        self.dtype, x = x.dtype, precision.widen(x)
        one = x.dtype.type
        scale = _window_sum(x * x, self.lo, self.hi)
        scale *= one(self.alpha)
        scale += one(self.k)
        self.x, self.scale = x, scale
        self.inv = xp.power(scale, one(-self.beta))  # s^-beta, reused by backward
        return (x * self.inv).astype(self.dtype, copy=False)

    def backward(self, dout):
        """dx_j = dy_j s_j^-beta - 2 alpha beta x_j sum_{i: j in window(i)} dy_i y_i / s_i."""
        self.check_grad(dout, self.x.shape)
        dout = precision.widen(dout)
        one = dout.dtype.type
        ratio = dout * self.x
        ratio *= self.inv
        ratio /= self.scale  # dy * y / s
        back = _window_sum(ratio, self.hi, self.lo)  # the transposed window: i in [j - hi, j + lo]
        back *= self.x
        back *= one(-2.0 * self.alpha * self.beta)
        back += dout * self.inv
        return back.astype(self.dtype, copy=False)

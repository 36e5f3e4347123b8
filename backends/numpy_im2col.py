"""The book's im2col and col2im on the host: one strided-view copy, and KH*KW strided adds.

The NumPy convolution itself uses its own layouts (numpy_conv); these are the backend-wide kernels other
layers build on (Conv2DTranspose: forward by col2im, backward by im2col).
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from xpnet.backends.shapes import out_size


def _padded(x, PH, PW, pad_value):
    if not (PH or PW):
        return x
    return np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), mode="constant", constant_values=pad_value)


def im2col(x, KH, KW, stride=(1, 1), pad=(0, 0), pad_value=0):
    """(N, C, H, W) -> (N*OH*OW, C*KH*KW), columns ordered (c, kh, kw) as in the book."""
    N, C, H, W = x.shape
    (SH, SW), (PH, PW) = stride, pad
    OH, OW = out_size(H, W, KH, KW, stride, pad)
    xpad = _padded(x, PH, PW, pad_value)
    sN, sC, sH, sW = xpad.strides
    view = as_strided(xpad, (N, OH, OW, C, KH, KW), (sN, sH * SH, sW * SW, sC, sH, sW), writeable=False)
    return view.reshape(N * OH * OW, C * KH * KW)


def col2im(col, x_shape, KH, KW, stride=(1, 1), pad=(0, 0)):
    """Inverse of im2col's scatter: sums overlapping windows into (N, C, H, W), in (kh, kw) order.

    ``col`` may be a transposed view (channel-major memory): the adds then read whole rows.
    """
    N, C, H, W = x_shape
    (SH, SW), (PH, PW) = stride, pad
    OH, OW = out_size(H, W, KH, KW, stride, pad)
    cols = col.reshape(N, OH, OW, C, KH, KW).transpose(0, 3, 4, 5, 1, 2)  # (N, C, KH, KW, OH, OW)
    img = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    for kh in range(KH):
        for kw in range(KW):
            img[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW] += cols[:, :, kh, kw]
    if PH or PW:
        img = np.ascontiguousarray(img[:, :, PH : PH + H, PW : PW + W])
    return img

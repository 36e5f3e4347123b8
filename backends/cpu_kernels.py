"""The compiled max pooling, ReLU and LeakyReLU (``cpu_kernels.c``, ``cpu_leaky_relu.c``) and BatchNorm
(``cpu_batchnorm.c``): loading them, what they take, one batch slice (or channel slice) per call.

numpy_split decides per call whether an array goes to them: float32, and laid out as the kernels address
it (:func:`plane_strides` for pooling, :func:`run_layout` for ReLU, :func:`planes` for LeakyReLU);
everything else stays on the NumPy code, which gives the same bits (see the C files for what "the same"
takes: NumPy's maximum, the first maximum in (kh, kw) order, gradients as ``dout * hit``, NumPy's
``where``; BatchNorm agrees to rounding, see numpy_batchnorm). Outputs are allocated by the caller, so
their memory order stays numpy_split's. The kernels are in the package's one extension module, with the
direct convolution's; unlike those they need no AVX-512 (they have portable loops).
"""

import ctypes
import functools
from collections import namedtuple

import numpy as np

from xpnet.backends import extension

PoolCache = namedtuple("PoolCache", "x pooled")  # what the compiled backward needs: it finds the argmax itself

OFF = None  # a reason to leave the kernels unused (the tests' reference runs set it), or None


def _declare(lib):
    ptr, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    lib.xpnet_ck_max_forward.argtypes = [ptr, ptr, i32, i32, ptr, ptr]
    lib.xpnet_ck_max_forward.restype = None
    lib.xpnet_ck_max_backward.argtypes = [ptr, ptr, ptr, ptr, i32, i32, ptr, ptr]
    lib.xpnet_ck_max_backward.restype = i32
    lib.xpnet_ck_relu_forward.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64]
    lib.xpnet_ck_relu_backward.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64]
    lib.xpnet_ck_relu_forward.restype = lib.xpnet_ck_relu_backward.restype = None
    lib.xpnet_ck_lrelu_forward.argtypes = [ptr, ptr, ptr, ctypes.c_float, i32, i32, i32, i64, ptr]
    lib.xpnet_ck_lrelu_backward.argtypes = [ptr, ptr, ptr, ctypes.c_float, i32, i32, i32, i64, ptr]
    lib.xpnet_ck_lrelu_forward.restype = lib.xpnet_ck_lrelu_backward.restype = None
    f64 = ctypes.c_double
    lib.xpnet_bn_forward.argtypes = [ptr] * 7 + [f64, i32, i32, i64, i32, i32, ptr]
    lib.xpnet_bn_backward.argtypes = [ptr] * 8 + [i32, i32, i64, i32, i32, ptr]
    lib.xpnet_bn_forward.restype = lib.xpnet_bn_backward.restype = None
    lib.xpnet_ck_use_vector.argtypes, lib.xpnet_ck_use_vector.restype = [i32], i32
    for fn in (lib.xpnet_ck_space_to_depth, lib.xpnet_ck_depth_to_space):
        fn.argtypes, fn.restype = [ptr, ptr, i32, i32, ptr], None
    return lib


@functools.cache
def _library():
    """``(the kernels' ctypes library, None)``, or ``(None, why)``."""
    lib, why = extension.library()
    return (None if lib is None else _declare(lib)), why


def _load():
    return _library()[0]


def unavailable():
    """Why the compiled pooling and ReLU can't run in this process (a sentence), or None where they can."""
    return OFF or _library()[1]


def use_vector(on):
    """Run the AVX-512 kernels where the CPU has them (True) or the portable loops (False); returns which run."""
    return bool(_load().xpnet_ck_use_vector(int(on)))


ANY_WINDOW = False  # the tests set it: the portable kernel on every window, not just the vectorised one


def pools(KH, KW, stride, pad):
    """Whether max pooling with this window runs compiled: 2x2 stride 2 without padding (DeepConvNet's), the
    window the AVX-512 code is written for. The portable loops on other windows lose to NumPy's tap loops:
    AlexNet's 3x3 stride 2 pooling, batch 32, took 39.3 ms compiled against 14.3 ms in NumPy."""
    return ANY_WINDOW or (KH, KW, tuple(stride), tuple(pad)) == (2, 2, (2, 2), (0, 0))


def plane_strides(a):
    """``(sn, sc)`` in floats, where image n, channel c of the (N, C, H, W) float32 array ``a`` starts, if each
    (H, W) plane is contiguous and the kernels are built; else None."""
    if a.dtype != np.float32 or a.ndim != 4 or unavailable():
        return None
    H, W = a.shape[2:]
    sn, sc, sh, sw = a.strides
    if (W > 1 and sw != 4) or (H > 1 and sh != 4 * W) or sn % 4 or sc % 4:
        return None
    return sn // 4, sc // 4


def run_layout(*arrays):
    """``(per_image, runs, stride)`` if the arrays (same shape, any itemsize) are laid out alike, C-contiguous
    or channel-major, and the kernels are built; else None. Images n0..n1 of them are then ``runs``
    contiguous runs of ``(n1 - n0) * per_image`` elements, run r starting at ``n0 * per_image + r * stride``."""
    a = arrays[0]
    steps = tuple(s // a.itemsize for s in a.strides)
    if unavailable() or any(b.shape != a.shape or tuple(s // b.itemsize for s in b.strides) != steps
                            for b in arrays[1:]):
        return None
    if a.flags.c_contiguous:
        return a[0].size if len(a) else 0, 1, 0
    if a.ndim == 4 and a.transpose(1, 0, 2, 3).flags.c_contiguous:
        N, C, H, W = a.shape
        return H * W, C, N * H * W
    return None


Planes = namedtuple("Planes", "C len strides by_channel")


def planes(*arrays):
    """:class:`Planes` if the kernels are built and each array (one shape, any itemsize) is a set of contiguous
    runs they can address: (N, C, H, W) with contiguous (H, W) planes (each array its own plane strides, so
    NCHW and channel-major mix), or any C-contiguous array (one run per row); else None.

    ``strides``: ``(sn, sc)`` in elements per array: plane (n, c) of array i starts at ``n * strides[2i] +
    c * strides[2i + 1]``. ``by_channel``: in every array a channel's images are adjacent (channel-major), so
    the images of a batch slice are one run per channel rather than C short ones per image.
    """
    a = arrays[0]
    if unavailable() or a.ndim == 0 or any(b.shape != a.shape for b in arrays[1:]):
        return None
    if all(b.flags.c_contiguous for b in arrays):  # one run of a row per image
        per = a[0].size if len(a) else 0
        return Planes(1, per, (per, 0) * len(arrays), False)
    if a.ndim != 4:
        return None
    steps = [_plane_steps(b) for b in arrays]
    if None in steps:
        return None
    length = a.shape[2] * a.shape[3]
    return Planes(a.shape[1], length, sum(steps, ()), all(sn == length for sn, _ in steps))


def _runs(layout, n0, n1):
    """``(first, stop, planes, length, strides, offset)``: images n0..n1 of a :class:`Planes` layout as the
    kernels loop over them (``for n in first..stop, c < planes``: a run of ``length`` at ``offset + n * sn +
    c * sc`` elements); by channel, the loop's "images" are the channels."""
    if not layout.by_channel:
        return n0, n1, layout.C, layout.len, layout.strides, 0
    s = layout.strides
    by_channel = tuple(v for i in range(0, len(s), 2) for v in (s[i + 1], 0))
    return 0, layout.C, 1, (n1 - n0) * layout.len, by_channel, n0 * layout.len


def _plane_steps(a):
    """``(sn, sc)`` in elements of the (N, C, H, W) array ``a``, if each (H, W) plane is contiguous; else None."""
    H, W = a.shape[2:]
    sn, sc, sh, sw = (s // a.itemsize for s in a.strides)
    if any(s % a.itemsize for s in a.strides) or (W > 1 and sw != 1) or (H > 1 and sh != W):
        return None
    return sn, sc


def _ptr(a, offset=0):
    """The address of ``a``'s element ``offset`` (counted in its itemsize)."""
    return a.ctypes.data + offset * a.itemsize


def _i64(*values):
    return (ctypes.c_int64 * len(values))(*values)


def pool_dims(x_shape, KH, KW, stride, pad, OH, OW):
    """The window as the kernels take it."""
    return (ctypes.c_int * 11)(x_shape[1], *x_shape[2:], KH, KW, *stride, *pad, OH, OW)


def max_forward(x, out, dims, n0, n1):
    """Window maxima of images n0..n1 of ``x`` into ``out`` (both with :func:`plane_strides`)."""
    _load().xpnet_ck_max_forward(_ptr(x), _ptr(out), n0, n1, dims, _i64(*plane_strides(x), *plane_strides(out)))


def max_backward(cache, dout, dx, dims, n0, n1):
    """dL/dx of images n0..n1 into ``dx``, from a :class:`PoolCache` and ``dout`` (all with plane strides)."""
    s = _i64(*plane_strides(cache.x), *plane_strides(cache.pooled), *plane_strides(dout), *plane_strides(dx))
    if _load().xpnet_ck_max_backward(_ptr(cache.x), _ptr(cache.pooled), _ptr(dout), _ptr(dx), n0, n1, dims, s):
        raise MemoryError("max pooling backward: could not allocate its scratch")


def relu_forward(x, y, mask, layout, n0, n1):
    """``y = maximum(x, 0)`` and, unless ``mask`` is None, ``mask = x > 0`` for images n0..n1 (:func:`run_layout`)."""
    per, runs, stride = layout
    _load().xpnet_ck_relu_forward(_ptr(x), _ptr(y), None if mask is None else _ptr(mask), n0 * per, runs,
                                  (n1 - n0) * per, stride)


def relu_backward(dout, mask, dx, layout, n0, n1):
    """``dx = dout * mask`` for images n0..n1 (:func:`run_layout`)."""
    per, runs, stride = layout
    _load().xpnet_ck_relu_backward(_ptr(dout), _ptr(mask), _ptr(dx), n0 * per, runs, (n1 - n0) * per, stride)


def space_to_depth_dims(C, H, W, stride, pad, HI, WI):
    """The sizes :func:`space_to_depth` and :func:`depth_to_space` take."""
    return (ctypes.c_int * 9)(C, H, W, *stride, *pad, HI, WI)


def space_to_depth(x, xs, dims, n0, n1):
    """``xs[n, (c, py, px), i, j] = x[n, c, SH*i + py - PH, SW*j + px - PW]`` for images n0..n1, where that pixel
    is inside x (xs's others are not written): x (N, C, H, W), xs (N, C*SH*SW, HI, WI), both C-contiguous
    float32; ``dims`` from :func:`space_to_depth_dims`. The direct convolution's build is needed, not OFF's."""
    _load().xpnet_ck_space_to_depth(_ptr(x), _ptr(xs), n0, n1, dims)


def depth_to_space(xs, x, dims, n0, n1):
    """Images n0..n1 of ``x`` from ``xs``: :func:`space_to_depth` undone, x's pixels no xs pixel maps to 0."""
    _load().xpnet_ck_depth_to_space(_ptr(xs), _ptr(x), n0, n1, dims)


def leaky_relu_forward(x, y, mask, slope, layout, n0, n1):
    """``y = where(x > 0, x, x * slope)`` and, unless ``mask`` is None, ``mask = x > 0`` for images n0..n1;
    ``layout``: :func:`planes` of ``(x, y)``, the mask laid out as ``y``."""
    first, stop, C, length, s, at = _runs(layout, n0, n1)
    _load().xpnet_ck_lrelu_forward(_ptr(x, at), _ptr(y, at), None if mask is None else _ptr(mask, at), slope, first,
                                   stop, C, length, _i64(*s))


def leaky_relu_backward(dout, mask, dx, slope, layout, n0, n1):
    """``dx = where(mask, dout, dout * slope)`` for images n0..n1; ``layout``: :func:`planes` of
    ``(dout, mask)``, ``dx`` laid out as the mask."""
    first, stop, C, length, s, at = _runs(layout, n0, n1)
    _load().xpnet_ck_lrelu_backward(_ptr(dout, at), _ptr(mask, at), _ptr(dx, at), slope, first, stop, C, length,
                                    _i64(*s))


def batchnorm_forward(x, y, gamma, beta, stats, eps, train, c0, c1):
    """Channels c0..c1 of the (N, C, H, W) ``x`` normalised into ``y`` (both with :func:`plane_strides`), scaled by
    ``gamma`` and shifted by ``beta`` (float32 (C,)). ``stats``: a float64 (3, C) array of mean, variance and
    1 / sqrt(variance + eps): the batch's written there (``train``), else the first two read from it."""
    N, C, H, W = x.shape
    _load().xpnet_bn_forward(_ptr(x), _ptr(y), _ptr(gamma), _ptr(beta), _ptr(stats[0]), _ptr(stats[1]),
                             _ptr(stats[2]), eps, int(train), N, H * W, c0, c1, _i64(*plane_strides(x),
                                                                                      *plane_strides(y)))


def batchnorm_backward(x, dout, dx, gamma, stats, grads, train, c0, c1):
    """dx (into ``dx``) and, into the float32 (2, C) ``grads``, dgamma and dbeta of :func:`batchnorm_forward`'s
    channels c0..c1 given ``dout`` (``x``, ``dout``, ``dx`` with plane strides; ``stats`` as it left them)."""
    N, C, H, W = x.shape
    s = _i64(*plane_strides(x), *plane_strides(dout), *plane_strides(dx))
    _load().xpnet_bn_backward(_ptr(x), _ptr(dout), _ptr(dx), _ptr(gamma), _ptr(stats[0]), _ptr(stats[2]),
                              _ptr(grads[0]), _ptr(grads[1]), int(train), N, H * W, c0, c1, s)

"""The compiled max pooling, ReLU and LeakyReLU (backends/cpu_kernels.c) against the NumPy code they stand in for.

Max pooling, ReLU and LeakyReLU are exact, so the check is bit for bit: the same numpy_split calls with the kernels
turned off give the reference, and results, gradients, dtypes and memory order must agree to the last bit
(float32 compared as uint32, so a -0 for a +0 would show; NaN must be NaN, whatever its payload). The
inputs are small integers, so windows have ties, with zeros of both signs, NaN and infinities among them,
and gradients with inf and NaN (NumPy's ``dout * 0`` of those is NaN, not 0). Both the AVX-512 kernels and
the portable loops are run, on one thread and on slices over three. Skipped where the extension is not
built, unless ``XPNET_REQUIRE_NATIVE=1`` (CI) makes that a failure.
"""

import os
from contextlib import contextmanager

import numpy as np
import pytest

from xpnet.backends import cpu_kernels, numpy_split
from xpnet.backends.base import Backend
from xpnet.backends.cpu_threads import BatchSplitter
from xpnet.backends.shapes import out_size

WHY = cpu_kernels.unavailable()
if WHY and os.environ.get("XPNET_REQUIRE_NATIVE") == "1":
    raise RuntimeError(f"XPNET_REQUIRE_NATIVE=1 but the compiled pooling and ReLU are unavailable: {WHY}")
pytestmark = [pytest.mark.skipif(bool(WHY), reason=f"compiled kernels unavailable: {WHY}"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]  # inf * 0 is meant


@contextmanager
def numpy_code():
    """numpy_split with the kernels turned off: the reference."""
    saved = cpu_kernels.OFF
    cpu_kernels.OFF = "turned off by the test"
    try:
        yield
    finally:
        cpu_kernels.OFF = saved


def test_only_the_vectorised_window_pools_compiled_by_default():
    assert cpu_kernels.pools(2, 2, (2, 2), (0, 0))
    assert not cpu_kernels.pools(3, 3, (2, 2), (0, 0)) and not cpu_kernels.pools(2, 2, (2, 2), (1, 1))
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    out, cache = numpy_split.max_forward(BatchSplitter(threads=1), x, 3, 3, (2, 2), (0, 0), 4, 4)
    assert not isinstance(cache, cpu_kernels.PoolCache)  # AlexNet's window: NumPy's tap loops


def assert_same_bits(got, want, what):
    """Same dtype, shape, memory order and bits; NaN as NaN whatever its payload (which of two NaNs a sum
    keeps is up to the compiler's operand order, in NumPy's loops as in the kernels)."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert got.strides == want.strides, f"{what}: memory order {got.strides}, NumPy's {want.strides}"
    if got.dtype.kind == "f":
        got, want = np.where(np.isnan(got), np.nan, got), np.where(np.isnan(want), np.nan, want)
    bits = {4: np.uint32, 8: np.uint64, 2: np.uint16, 1: np.uint8}[got.itemsize]
    mismatch = np.flatnonzero(got.view(bits) != want.view(bits))
    assert mismatch.size == 0, f"{what}: {mismatch.size} elements differ, first at {mismatch[0]}: " \
                               f"{got.ravel()[mismatch[0]]!r} vs {want.ravel()[mismatch[0]]!r}"


def tricky(shape, rng, dtype=np.float32):
    """Small integers (ties), -0 and +0, a few NaN and infinities, the last row all -inf (so that padded
    windows there have padding, -inf too, as their maximum)."""
    a = rng.integers(-2, 3, shape).astype(dtype)
    a[..., -1, :] = -np.inf
    zeros = np.flatnonzero(a == 0)
    a.flat[zeros[rng.random(zeros.size) < 0.5]] = -0.0
    for value in (np.nan, np.inf, -np.inf):
        a.flat[rng.integers(0, a.size, max(1, a.size // 97))] = value
    return a


def gradient(shape, rng, dtype=np.float32):
    """Normal values with -0, inf and NaN among them."""
    d = rng.standard_normal(shape).astype(dtype)
    for value in (-0.0, np.inf, -np.inf, np.nan):
        d.flat[rng.integers(0, d.size, max(1, d.size // 89))] = value
    return d


def laid_out(a, layout):
    """``a``'s values in one of the memory orders a layer may hand over."""
    if layout == "channel-major":  # the NumPy convolution's output
        return a.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
    if layout == "channels-last":  # a view whose planes are not contiguous: stays on NumPy
        return a.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    return a.copy()


POOLS = [  # N, C, H, W, (KH, KW), stride, pad
    (4, 3, 8, 8, (2, 2), (2, 2), (0, 0)),  # DeepConvNet's pooling, tiled exactly
    (2, 3, 28, 28, (2, 2), (2, 2), (0, 0)),  # 14 outputs a row: one masked vector
    (1, 2, 6, 70, (2, 2), (2, 2), (0, 0)),  # 35 a row: two full vectors and a tail; one image
    (3, 2, 7, 9, (2, 2), (2, 2), (0, 0)),  # odd sizes: the last row and column are in no window
    (2, 2, 6, 7, (2, 2), (2, 2), (1, 1)),  # 2x2 with padding
    (2, 3, 7, 6, (3, 3), (2, 2), (1, 1)),  # overlapping windows with padding
    (2, 2, 7, 6, (3, 2), (1, 2), (1, 1)),  # KH != KW, stride != kernel
    (2, 2, 8, 9, (2, 2), (3, 3), (0, 0)),  # stride > kernel: gaps between windows
    (2, 2, 5, 5, (3, 3), (1, 1), (1, 1)),  # every input in up to nine windows
    (1, 2, 3, 4, (1, 1), (1, 1), (0, 0)),  # 1x1
]


@pytest.mark.parametrize("layout", ["nchw", "channel-major", "channels-last"])
@pytest.mark.parametrize("N, C, H, W, K, stride, pad", POOLS)
def test_max_pooling_gives_the_numpy_codes_bits(kernels, split, layout, N, C, H, W, K, stride, pad):
    rng = np.random.default_rng(H * W + K[0])
    x = laid_out(tricky((N, C, H, W), rng), layout)
    OH, OW = out_size(H, W, *K, stride, pad)
    dout = gradient((N, C, OH, OW), rng)
    with numpy_code():
        want, want_cache = numpy_split.max_forward(split, x, *K, stride, pad, OH, OW)
        want_dx = numpy_split.max_backward(split, dout, want_cache, x.shape, *K, stride, pad)
    got, cache = numpy_split.max_forward(split, x, *K, stride, pad, OH, OW)
    assert isinstance(cache, cpu_kernels.PoolCache) == (layout != "channels-last")
    kept = dout.copy()
    dx = numpy_split.max_backward(split, dout, cache, x.shape, *K, stride, pad)
    assert_same_bits(got, want, "maxima")
    assert_same_bits(dx, want_dx, "dx")
    assert_same_bits(dout, kept, "dout")  # the incoming gradient is not touched


@pytest.mark.parametrize("shape", [(5, 3, 7, 9), (3, 4, 16, 16), (7, 50), (1, 2, 3, 1)], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "strided"])
def test_relu_gives_the_numpy_codes_bits(kernels, split, shape, layout):
    if len(shape) == 2 and layout != "nchw":
        pytest.skip("layouts of (N, C, H, W) arrays")
    rng = np.random.default_rng(len(shape))
    x = tricky(shape, rng).astype(np.float32) * np.float32(1.5)
    x = x[:, :, ::-1] if layout == "strided" else laid_out(x, layout) if x.ndim == 4 else x
    dout = gradient(shape, rng)
    with numpy_code():
        want_y, want_mask = numpy_split.relu_forward(split, x)
        want_y_only = numpy_split.relu(split, x)
        want_dx = numpy_split.relu_backward(split, dout, want_mask)
        want_dx_out = numpy_split.relu_backward(split, dout, want_y > 0)  # the mask of an inference pass
    y, mask = numpy_split.relu_forward(split, x)
    kept = dout.copy()
    dx, dx_out = numpy_split.relu_backward(split, dout, mask), numpy_split.relu_backward(split, dout, y > 0)
    assert_same_bits(y, want_y, "y")
    assert_same_bits(mask, want_mask, "mask")
    assert_same_bits(numpy_split.relu(split, x), want_y_only, "relu without a mask")
    assert_same_bits(dx, want_dx, "dx")
    assert_same_bits(dx_out, want_dx_out, "dx from y > 0")
    assert_same_bits(dout, kept, "dout")


def test_other_dtypes_stay_on_numpy_and_a_strided_gradient_is_copied(split, monkeypatch):
    def refuse(*args):
        raise AssertionError("the float32 kernels were called")

    rng = np.random.default_rng(7)
    x64 = tricky((2, 3, 6, 6), rng, np.float64)
    d64 = gradient((2, 3, 3, 3), rng, np.float64)
    with monkeypatch.context() as m:
        for name in ("max_forward", "max_backward", "relu_forward", "relu_backward", "leaky_relu_forward",
                     "leaky_relu_backward"):
            m.setattr(cpu_kernels, name, refuse)
        pooled, cache = numpy_split.max_forward(split, x64, 2, 2, (2, 2), (0, 0), 3, 3)
        dx = numpy_split.max_backward(split, d64, cache, x64.shape, 2, 2, (2, 2), (0, 0))
        dots = x64[:, :, :1, :1]  # 1x1 planes: no stride tells the dtype apart
        numpy_split.max_backward(split, dots, numpy_split.max_forward(split, dots, 1, 1, (1, 1), (0, 0), 1, 1)[1],
                                 dots.shape, 1, 1, (1, 1), (0, 0))
        y, mask = numpy_split.relu_forward(split, x64)
        relu_dx = numpy_split.relu_backward(split, x64, mask)
        half = x64.astype(np.float16)
        numpy_split.relu_backward(split, numpy_split.relu_forward(split, half)[0], half > 0)
        leaky, leaky_mask = numpy_split.leaky_relu_forward(split, x64, 0.2)
        leaky_dx = numpy_split.leaky_relu_backward(split, x64, leaky_mask, 0.2)
        numpy_split.leaky_relu_backward(split, numpy_split.leaky_relu(split, half, 0.2), half > 0, 0.2)
    assert leaky.dtype == leaky_dx.dtype == np.float64
    assert pooled.dtype == dx.dtype == y.dtype == relu_dx.dtype == np.float64
    x, dout = x64.astype(np.float32), d64.astype(np.float32)
    pooled, cache = numpy_split.max_forward(split, x, 2, 2, (2, 2), (0, 0), 3, 3)
    assert isinstance(cache, cpu_kernels.PoolCache)
    with numpy_code():
        want_cache = numpy_split.max_forward(split, x, 2, 2, (2, 2), (0, 0), 3, 3)[1]
        want = numpy_split.max_backward(split, dout, want_cache, x.shape, 2, 2, (2, 2), (0, 0))
        want16 = numpy_split.max_backward(split, dout.astype(np.float16), want_cache, x.shape, 2, 2, (2, 2), (0, 0))
    strided = laid_out(dout, "channels-last")
    assert_same_bits(numpy_split.max_backward(split, strided, cache, x.shape, 2, 2, (2, 2), (0, 0)), want,
                     "dx from a channels-last dout")
    # a float16 gradient after a compiled forward: NumPy's code from the cached input, dx in float16
    assert_same_bits(numpy_split.max_backward(split, dout.astype(np.float16), cache, x.shape, 2, 2, (2, 2), (0, 0)),
                     want16, "float16 dx")


class Generic(Backend):
    """The backend interface's own (xp) code: what the layers ran before the kernels."""

    xp = np


@pytest.mark.parametrize("slope", [0.2, 0.0])
@pytest.mark.parametrize("shape", [(5, 3, 7, 9), (3, 4, 16, 16), (7, 50), (2, 3, 17), (1, 2, 3, 1)], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "strided"])
@pytest.mark.parametrize("dout_layout", ["same", "nchw", "strided"])
def test_leaky_relu_gives_the_generic_codes_bits(kernels, split, shape, layout, dout_layout, slope):
    """x * slope where x <= 0 (so NaN * slope, -0 * slope and, for slope 0, -inf * 0 = NaN), the mask x > 0,
    and the gradient in the layouts a layer meets: the GAN's discriminator hands its LeakyReLUs a
    channel-major x and an NCHW dout (and the other way round)."""
    if len(shape) != 4 and layout == "channel-major":
        pytest.skip("a layout of (N, C, H, W) arrays")
    rng = np.random.default_rng(len(shape) + int(slope * 100))
    x = tricky(shape, rng) * np.float32(1.5)
    x = x[..., ::-1] if layout == "strided" else laid_out(x, layout) if x.ndim == 4 else x
    dout = gradient(shape, rng)
    if dout_layout == "same":
        dout = laid_out(dout, layout if layout != "strided" else "nchw") if dout.ndim == 4 else dout
    elif dout_layout == "strided":
        dout = np.flip(dout.copy(), axis=0)
    with numpy_code():
        want_y, want_mask = numpy_split.leaky_relu_forward(split, x, slope)
        want_dx = numpy_split.leaky_relu_backward(split, dout, want_mask, slope)
    y, mask = numpy_split.leaky_relu_forward(split, x, slope)
    kept = dout.copy()
    dx, dx_out = (numpy_split.leaky_relu_backward(split, dout, m, slope) for m in (mask, y > 0))
    assert_same_bits(y, want_y, "y")
    assert_same_bits(mask, want_mask, "mask")
    assert_same_bits(numpy_split.leaky_relu(split, x, slope), want_y, "leaky_relu without a mask")
    assert_same_bits(dx, want_dx, "dx")
    assert_same_bits(dx_out, want_dx, "dx from y > 0")  # an inference pass's mask: y > 0 exactly where x > 0
    assert dout.tobytes() == kept.tobytes(), "dout was written"
    # the values the layer computed before the kernels (base.Backend's xp code), in any memory order
    gen_y, gen_mask = Generic().leaky_relu_forward(x, slope)
    gen_dx = Generic().leaky_relu_backward(dout, gen_mask, slope)
    for got, want, what in ((y, gen_y, "y"), (mask, gen_mask, "mask"), (dx, gen_dx, "dx")):
        assert_same_bits(np.ascontiguousarray(got), np.ascontiguousarray(want), f"{what} against the generic code")


def test_leaky_relu_runs_compiled_on_the_layouts_it_addresses(split, monkeypatch):
    """NCHW, channel-major and mixed arrays reach the kernels, a strided dout by a copy; a strided x stays on
    NumPy (the test above checks that both give the same bits)."""
    calls = []

    def counted(name, kernel):
        def run(*args):
            calls.append(name)
            return kernel(*args)
        return run

    for name in ("leaky_relu_forward", "leaky_relu_backward"):
        monkeypatch.setattr(cpu_kernels, name, counted(name, getattr(cpu_kernels, name)))
    rng = np.random.default_rng(3)
    x = laid_out(rng.standard_normal((4, 3, 5, 6)).astype(np.float32), "channel-major")
    y, mask = numpy_split.leaky_relu_forward(split, x, 0.2)
    assert y.strides == x.strides and "leaky_relu_forward" in calls
    for dout in (np.ones(x.shape, np.float32), np.ones((4, 3, 6, 5), np.float32).transpose(0, 1, 3, 2)):
        calls.clear()
        dx = numpy_split.leaky_relu_backward(split, dout, mask, 0.2)
        assert calls and set(calls) == {"leaky_relu_backward"} and dx.strides == x.strides
    calls.clear()
    numpy_split.leaky_relu_forward(split, x[:, :, :, ::2], 0.2)
    assert not calls

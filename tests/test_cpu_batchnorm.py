"""The compiled BatchNorm (backends/cpu_batchnorm.c) against the generic code it stands in for.

BatchNorm's sums round, so the check is within a bound derived from the computation (tests/tolerance.py):
against the generic code run in float64 on the same float32 values, the kernels' error is that of their
few float32 element-wise steps (their sums run in double), relative to what those steps hold: ``|x| + |mean|``
over the standard deviation, times |gamma|, for the output. Against the generic code in float32, whose
sums over the M = N*H*W values of a channel round in float32, the bound takes M terms more. Channel means
far from 0 against the spread are among the inputs (what a shifted variance is for). Both the AVX-512
build and the plain one are run (conftest's ``kernels``), on one thread and on channel slices over three
(``split``; the same bits). Skipped where the extension is not built, unless ``XPNET_REQUIRE_NATIVE=1``
(CI) makes that a failure.
"""

import os

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import layers
from xpnet.backends import batchnorm, cpu_kernels, numpy_batchnorm, numpy_split
from xpnet.backends.cpu_threads import BatchSplitter

WHY = cpu_kernels.unavailable()
if WHY and os.environ.get("XPNET_REQUIRE_NATIVE") == "1":
    raise RuntimeError(f"XPNET_REQUIRE_NATIVE=1 but the compiled BatchNorm is unavailable: {WHY}")
needs_kernels = pytest.mark.skipif(bool(WHY), reason=f"compiled kernels unavailable: {WHY}")
F32, EPS = np.float32, 1e-5


def inputs(shape, offset, rng):
    """x with per-channel means around ``offset`` (spread 1 to 2), gamma, beta, dout (float32)."""
    C = shape[1]
    x = (offset * (1 + rng.random((1, C, 1, 1))) + (1 + rng.random((1, C, 1, 1))) * rng.standard_normal(shape))
    return (x.astype(F32), rng.standard_normal(C).astype(F32), rng.standard_normal(C).astype(F32),
            rng.standard_normal(shape).astype(F32))


def laid_out(a, layout):
    if layout == "channel-major":  # the NumPy convolution's output
        return a.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
    if layout == "channels-last":  # planes not contiguous: copied first
        return a.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    return a.copy()


def order(a):
    """The memory order: the strides of the axes longer than 1 (a length-1 axis's stride means nothing)."""
    return tuple(s for s, n in zip(a.strides, a.shape) if n > 1)


def _eps(dtype):
    return np.finfo(dtype).eps


def wide(*arrays):
    return [a.astype(np.float64) for a in arrays]


def bounds(x, gamma, beta, dout, mean, invstd, train, extra=0):
    """``{what: (terms, scale)}`` of the kernels' rounding (``extra`` terms more for the float32 generic code's
    M-term sums). xs = (|x| + |mean|) * invstd is what xn's float32 steps hold (its error is ~eps * xs), |xn|
    what it is: dgamma's error is sum(|dout| xs) eps, and dx's xn * dgamma / M term errs by that times |xn|
    plus |dgamma| / M times xn's error."""
    b = (1, -1, 1, 1)
    M = x.size // x.shape[1]
    xs = (np.abs(x) + np.abs(mean).reshape(b)) * invstd.reshape(b)
    xn = np.abs(x - mean.reshape(b)) * invstd.reshape(b)
    k = np.abs(gamma).reshape(b) * invstd.reshape(b)
    ad = np.abs(dout)
    sd, sdx, sdxn = (t.sum(axis=(0, 2, 3)).reshape(b) for t in (ad, ad * xs, ad * xn))
    dx = k * (ad + (sd + xn * sdx + xs * sdxn) / M) if train else k * ad
    return {"y": (4 + extra, np.abs(gamma).reshape(b) * xs + np.abs(beta).reshape(b)),
            "dx": (6 + extra, dx), "dgamma": (2 + extra, sdx.reshape(-1)), "dbeta": (1 + extra, sd.reshape(-1))}


def check(got, want, terms_scales, dtype=F32):
    for (name, g), w in zip(got.items(), want):
        terms, scale = terms_scales[name]
        assert_close(g, w, terms=terms, scale=scale, dtype=dtype, err_msg=name)


SHAPES = [(4, 3, 5, 7), (1, 2, 1, 1), (64, 8, 7, 7), (3, 2, 13, 9), (4, 2, 160, 160)]  # the last: 102400 a channel


@needs_kernels
@pytest.mark.parametrize("train", [True, False], ids=["batch-stats", "running-stats"])
@pytest.mark.parametrize("offset", [0.0, 300.0, 1e5])
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "channels-last"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batchnorm_within_rounding_of_the_generic_code(kernels, split, shape, layout, offset, train):
    rng = np.random.default_rng(sum(shape) + int(offset))
    x, gamma, beta, dout = inputs(shape, offset, rng)
    x, dout = laid_out(x, layout), laid_out(dout, "nchw" if layout == "channel-major" else "channel-major")
    stats = None if train else (x.mean(axis=(0, 2, 3)).astype(F32), (x.var(axis=(0, 2, 3)) + 1).astype(F32))
    kept_x, kept_d = x.copy(), dout.copy()
    y, (mean, var), cache = numpy_batchnorm.forward(split, x, gamma, beta, EPS, stats)
    assert isinstance(cache, numpy_batchnorm.Kept) and y.dtype == mean.dtype == var.dtype == F32
    assert order(y) == order(x if layout != "channels-last" else np.empty(shape, F32))
    dx, dgamma, dbeta = numpy_batchnorm.backward(split, dout, cache, gamma)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == F32 and order(dx) == order(y)
    np.testing.assert_array_equal(x, kept_x)
    np.testing.assert_array_equal(dout, kept_d)

    x64, g64, b64, d64 = wide(x, gamma, beta, dout)
    y64, (mean64, var64), ref = batchnorm.forward(np, x64, g64, b64, EPS, stats and wide(*stats))
    want = (y64, *batchnorm.backward(d64, ref, g64))
    got = {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    invstd = 1 / np.sqrt(var64 + EPS)
    check(got, want, bounds(x64, g64, b64, d64, mean64, invstd, train))
    assert_close(mean, mean64, terms=1, scale=np.abs(mean64), err_msg="mean")  # double sums, rounded once
    assert_close(var, var64, terms=1, scale=var64, err_msg="var")
    # the float32 generic code (the layer's before the kernels): its sums over M values round in float32
    y32, _, ref32 = batchnorm.forward(np, x, gamma, beta, EPS, stats)
    check(got, (y32, *batchnorm.backward(dout, ref32, gamma)),
          bounds(x64, g64, b64, d64, mean64, invstd, train, extra=x.size // shape[1]))


@needs_kernels
def test_a_thread_split_gives_the_same_bits(monkeypatch):
    rng = np.random.default_rng(5)
    x, gamma, beta, dout = inputs((6, 7, 5, 3), 2.0, rng)
    results = []
    monkeypatch.setattr(numpy_split, "MIN_SLICE", 1)
    for threads in (1, 3):
        splitter = BatchSplitter(threads=threads)
        if splitter.threads != threads:
            pytest.skip("no BLAS whose thread count threadpoolctl can set: the split is off")
        y, stats, cache = numpy_batchnorm.forward(splitter, x, gamma, beta, EPS)
        results.append((y, *stats, *numpy_batchnorm.backward(splitter, dout, cache, gamma)))
    for one, three in zip(*results):
        assert one.tobytes() == three.tobytes()


@needs_kernels
def test_other_inputs_stay_on_the_generic_code():
    """float64 and float16, 2-D input: the generic code; a float16 or float64 gradient after a compiled forward:
    the generic backward from the compiled cache, in the gradient's dtype."""
    from xpnet.backends.numpy_backend import NumpyBackend

    be, rng = NumpyBackend(), np.random.default_rng(2)
    x, gamma, beta, dout = inputs((3, 4, 5, 5), 1.0, rng)
    for dtype, shape in ((np.float64, x.shape), (np.float16, x.shape), (F32, (75, 4))):
        xs = x.astype(dtype).reshape(shape) if len(shape) == 4 else x.transpose(0, 2, 3, 1).reshape(shape)
        y, _, cache = be.batchnorm_forward(xs, gamma.astype(dtype), beta.astype(dtype), EPS)
        assert isinstance(cache, batchnorm.Normalized) and y.dtype == dtype
    y, _, cache = be.batchnorm_forward(x, gamma, beta, EPS)
    assert isinstance(cache, numpy_batchnorm.Kept)
    ref = batchnorm.forward(np, x, gamma, beta, EPS)[2]
    for dtype in (np.float16, np.float64):
        got = be.batchnorm_backward(dout.astype(dtype), cache, gamma)
        want = batchnorm.backward(dout.astype(dtype), ref, gamma)
        assert got[0].dtype == dtype
        x64, g64, b64, d64 = wide(x, gamma, beta, dout)
        invstd = 1 / ref.std.astype(np.float64).reshape(-1)
        terms = bounds(x64, g64, b64, d64, x64.mean(axis=(0, 2, 3)), invstd, True, extra=x.size // 4)
        check(dict(zip(("dx", "dgamma", "dbeta"), got)), want, terms, dtype=max(dtype, F32, key=_eps))


@pytest.mark.parametrize("train", [True, False])
def test_float32_batchnorm_layer_within_rounding_of_float64(backend, rng, train):
    """The layer in float32 (the kernels on NumPy, the generic code on CUDA) against float64: output, running
    statistics, dx and the parameter gradients, with a channel mean far from 0."""
    shape = (8, 3, 6, 5)
    x, gamma, beta, dout = inputs(shape, 50.0, rng)
    lo, hi = layers.BatchNorm(3), layers.BatchNorm(3, dtype="float64")
    for bn, dt in ((lo, F32), (hi, np.float64)):
        bn.params["gamma"], bn.params["beta"] = backend.asarray(gamma, dt), backend.asarray(beta, dt)
        bn.buffers["running_mean"] = backend.asarray(x.mean(axis=(0, 2, 3)) + 1, dt)
    pairs = ((lo, F32), (hi, np.float64))
    y_lo, y_hi = (backend.asnumpy(bn.forward(backend.asarray(x, dt), train)) for bn, dt in pairs)
    dx_lo, dx_hi = (backend.asnumpy(bn.backward(backend.asarray(dout, dt))) for bn, dt in pairs)
    x64, g64, b64, d64 = wide(x, gamma, beta, dout)
    mean64 = x64.mean(axis=(0, 2, 3)) if train else backend.asnumpy(hi.buffers["running_mean"])
    invstd = 1 / backend.asnumpy(hi.cache.std).reshape(-1)
    M = x.size // 3
    b = bounds(x64, g64, b64, d64, mean64, invstd, train, extra=M)  # the generic float32 code's sums on CUDA
    grads = [backend.asnumpy(bn.grads[k]) for bn in (lo, hi) for k in ("gamma", "beta")]
    check({"y": y_lo, "dx": dx_lo, "dgamma": grads[0], "dbeta": grads[1]}, (y_hi, dx_hi, *grads[2:]), b)
    for k in ("running_mean", "running_var"):
        want = backend.asnumpy(hi.buffers[k])
        assert backend.asnumpy(lo.buffers[k]).dtype == F32
        scale = np.abs(x64).max() ** (2 if k == "running_var" else 1)  # M-term float32 sums of x, of (x - mean)^2
        assert_close(backend.asnumpy(lo.buffers[k]), want, terms=M + 3, scale=scale, err_msg=k)

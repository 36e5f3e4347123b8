"""The compiled direct convolution (backends/direct_conv.c) against a float64 reference worked out here.

The reference is the definition itself, a sum over the taps of shifted windows of the zero-padded input
(no im2col, no GEMM), in float64. The shapes walk through the kernels' edge cases: output planes that
are not a multiple of 16 floats (masked tails), channel counts that leave remainders after the 8-, 4- and
5-wide register blocks, filters other than 3x3, every padding the kernels take, one image, and batch
slices over threads. Skipped where the CPU lacks AVX-512F, and where the kernels are not built unless
``XPNET_REQUIRE_NATIVE=1`` (CI) makes that a failure.
"""

import os

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import backends
from xpnet.backends import direct_conv, numpy_conv_plan, numpy_split
from xpnet.backends.cpu_threads import BatchSplitter
from xpnet.backends.numpy_backend import NumpyBackend
from xpnet.backends.numpy_conv_plan import Geometry, new_plan

WHY = direct_conv.unavailable()
if WHY and direct_conv.NO_AVX512 not in WHY and os.environ.get("XPNET_REQUIRE_NATIVE") == "1":
    raise RuntimeError(f"XPNET_REQUIRE_NATIVE=1 but the direct convolution is unavailable: {WHY}")
needs_kernels = pytest.mark.skipif(bool(WHY), reason=f"direct convolution unavailable: {WHY}")


def reference(x, W, b, pad):
    """out[n, f, oh, ow] = b[f] + sum_{c, kh, kw} W[f, c, kh, kw] * x_padded[n, c, oh + kh, ow + kw], float64."""
    x, W = x.astype(np.float64), W.astype(np.float64)
    KH, KW = W.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    OH, OW = xp.shape[2] - KH + 1, xp.shape[3] - KW + 1
    out = np.zeros((x.shape[0], W.shape[0], OH, OW))
    for kh in range(KH):
        for kw in range(KW):
            out += np.einsum("nchw,fc->nfhw", xp[:, :, kh:kh + OH, kw:kw + OW], W[:, :, kh, kw])
    return out + (0 if b is None else b.astype(np.float64)[None, :, None, None])


def reference_grads(x, W, pad, dout):
    """(dx, dW, db) of :func:`reference` for upstream gradient ``dout``, float64, by the same tap sums."""
    x, W, dout = x.astype(np.float64), W.astype(np.float64), dout.astype(np.float64)
    KH, KW = W.shape[2:]
    OH, OW = dout.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    for kh in range(KH):
        for kw in range(KW):
            dW[:, :, kh, kw] = np.einsum("nfhw,nchw->fc", dout, xp[:, :, kh:kh + OH, kw:kw + OW])
            dxp[:, :, kh:kh + OH, kw:kw + OW] += np.einsum("nfhw,fc->nchw", dout, W[:, :, kh, kw])
    H, Wd = x.shape[2:]
    return dxp[:, :, pad[0]:pad[0] + H, pad[1]:pad[1] + Wd], dW, dout.sum(axis=(0, 2, 3))


SHAPES = [  # N, C, H, W, FN, KH, KW, pad
    (3, 1, 28, 28, 16, 3, 3, (1, 1)),  # DeepConvNet's conv1: one input channel
    (2, 16, 14, 14, 32, 3, 3, (1, 1)),  # 196 pixels: a masked tail of 4
    (2, 32, 14, 14, 32, 3, 3, (2, 2)),  # padding 2 (conv4): 16x16 out
    (2, 64, 8, 8, 64, 3, 3, (1, 1)),  # conv6's channels
    (4, 7, 9, 11, 13, 3, 3, (0, 1)),  # odd channels: remainders after every block width
    (1, 3, 6, 5, 9, 2, 3, (1, 2)),  # KH != KW, one image
    (2, 5, 12, 10, 6, 5, 5, (2, 4)),  # 5x5 filters, unequal padding
    (2, 6, 5, 7, 3, 1, 1, (0, 0)),  # 1x1
    (1, 2, 3, 3, 17, 3, 3, (2, 2)),  # a map smaller than the filter's reach, 17 filters
    (1, 3, 4, 37, 5, 3, 3, (1, 2)),  # rows of 3 vector pieces (OW 39)
    (1, 2, 3, 70, 3, 3, 3, (1, 1)),  # rows wider than 64: the shifted rows' plain loop
    (2, 9, 8, 8, 13, 2, 2, (0, 0)),  # 2x2 (strided_conv's 4x4/2); 49 pixels: one block, 6+6+1 filters
    (2, 5, 9, 8, 11, 2, 2, (1, 0)),  # 2x2, 70 pixels
]


def _case(N, C, H, W, FN, KH, KW, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, C, H, W)).astype(np.float32),
            rng.standard_normal((FN, C, KH, KW)).astype(np.float32), rng.standard_normal(FN).astype(np.float32))


@pytest.fixture(params=[1, 3], ids=["one-thread", "three-slices"])
def split(request, monkeypatch):
    if request.param == 1:
        return None
    monkeypatch.setattr(numpy_split, "MIN_SLICE", 1)
    s = BatchSplitter(threads=request.param)
    if s.threads == 1:
        pytest.skip("no BLAS whose thread count threadpoolctl can set: the split is off")
    return s


@pytest.fixture(params=["taps", "pixels"])
def weight_grad(request, monkeypatch):
    """Both filter-gradient kernels on every shape, whichever by_pixels would pick for it."""
    monkeypatch.setattr(direct_conv, "by_pixels", lambda g: request.param == "pixels")
    return request.param


@needs_kernels
@pytest.mark.parametrize("N, C, H, W, FN, KH, KW, pad", SHAPES)
def test_direct_convolution_and_its_gradients_match_the_definition(split, weight_grad, N, C, H, W, FN, KH, KW, pad):
    x, Wt, b = _case(N, C, H, W, FN, KH, KW)
    plan = new_plan(Geometry(N, C, H, W, FN, KH, KW, (1, 1), pad), np.float32, split, algorithm="direct")
    assert isinstance(plan, direct_conv.DirectPlan)
    out, cache = plan.forward(x, Wt, b)
    want = reference(x, Wt, b, pad)
    assert out.dtype == np.float32 and out.shape == want.shape
    assert_close(out, want, terms=C * KH * KW + 1, scale=3.0, dtype=np.float32)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    kept = dout.copy()
    dx, dW, db = plan.backward(dout, cache, Wt)
    np.testing.assert_array_equal(dout, kept)  # the incoming gradient is not touched
    rdx, rdW, rdb = reference_grads(x, Wt, pad, dout)
    for name, got, ref, terms in (("dx", dx, rdx, FN * KH * KW), ("dW", dW, rdW, N * out.shape[2] * out.shape[3]),
                                  ("db", db, rdb, N * out.shape[2] * out.shape[3])):
        assert got.dtype == np.float32 and got.shape == ref.shape, name
        assert_close(got, ref, terms=terms, scale=3.0, dtype=np.float32, err_msg=name)


@needs_kernels
def test_no_bias_and_a_non_contiguous_input():
    x, Wt, _ = _case(2, 4, 7, 9, 5, 3, 3)
    strided = np.asfortranarray(x)  # same values, another memory order: copied once, same result
    plan = new_plan(Geometry(2, 4, 7, 9, 5, 3, 3, (1, 1), (1, 1)), np.float32, algorithm="direct")
    out, _ = plan.forward(strided, Wt, None)
    assert_close(out, reference(x, Wt, None, (1, 1)), terms=4 * 9, scale=3.0, dtype=np.float32)


@needs_kernels
def test_auto_picks_direct_where_it_suits_and_im2col_elsewhere():
    def pick(dtype, stride, pad, algorithm="auto"):
        return type(new_plan(Geometry(2, 3, 8, 8, 4, 3, 3, stride, pad), dtype, algorithm=algorithm)).__name__

    assert pick(np.float32, (1, 1), (1, 1)) == "DirectPlan"
    assert pick(np.float64, (1, 1), (1, 1)) == "ConvPlan"  # float64 stays on the im2col path
    assert pick(np.float16, (1, 1), (1, 1)) == "ConvPlan"
    assert pick(np.float32, (2, 2), (1, 1)) == "ConvPlan"  # strided, 3x3: zero taps (test_strided_conv)
    assert pick(np.float32, (1, 1), (3, 3)) == "ConvPlan"  # padding the full convolution can't take
    assert pick(np.float32, (1, 1), (1, 1), "im2col") == "ConvPlan"


def test_asking_for_what_cannot_run_is_a_one_line_error(monkeypatch):
    with pytest.raises(ValueError, match="convolution algorithm must be one of auto, direct, im2col, got 'fast'"):
        new_plan(Geometry(2, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1)), np.float32, algorithm="fast")
    with pytest.raises(ValueError, match="can't run .*float32 only, not float64"):
        new_plan(Geometry(2, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1)), np.float64, algorithm="direct")
    monkeypatch.setenv("XPNET_CONV", "winograd")
    with pytest.raises(ValueError, match="XPNET_CONV must be one of auto, direct, im2col, got 'winograd'"):
        NumpyBackend()
    monkeypatch.setattr(direct_conv, "_WHY", "this CPU has no AVX-512F")
    monkeypatch.setattr(direct_conv, "_LIB", None)
    monkeypatch.setenv("XPNET_CONV", "direct")
    with pytest.raises(ValueError, match="'direct' asked for, but this CPU has no AVX-512F"):
        NumpyBackend()
    monkeypatch.setenv("XPNET_CONV", "auto")
    assert "direct convolution unavailable: this CPU has no AVX-512F" in NumpyBackend().conv_description()
    plan = numpy_conv_plan.new_plan(Geometry(2, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1)), np.float32)
    assert isinstance(plan, numpy_conv_plan.ConvPlan)  # auto falls back to im2col


@needs_kernels
def test_a_deep_convnet_step_agrees_with_the_im2col_backend(monkeypatch):
    from xpnet.models import DeepConvNet

    rng = np.random.default_rng(3)
    x, t = rng.random((6, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 6)
    grads = []
    for conv in ("direct", "im2col"):
        monkeypatch.setattr(backends.get("numpy"), "conv", conv)  # the layers run on the arrays' backend
        model = DeepConvNet(dtype="float32", seed=0)
        model.loss(x, t, train=False)
        model.backward()
        kinds = {type(p).__name__ for layer in model.net.layers.values() for p in getattr(layer, "_ws", {}).get(
            "plans", {}).values()}
        assert kinds == {"DirectPlan" if conv == "direct" else "ConvPlan"}
        grads.append({k: np.array(v) for k, v in model.grads.items()})
    for name in grads[0]:
        scale = np.abs(grads[1][name]).max() + 1e-30
        assert_close(grads[0][name], grads[1][name], terms=6 * 28 * 28 * 9, scale=scale, dtype=np.float32,
                     err_msg=name)


@pytest.mark.parametrize("algorithm", [pytest.param("direct", marks=needs_kernels), "im2col"])
@pytest.mark.parametrize("C, FN", [(4, 6), (16, 4)])  # im2col: dx by col2im, and by the full convolution
def test_without_the_input_gradient_dx_is_not_computed_and_the_rest_is_the_same(algorithm, C, FN):
    x, Wt, b = _case(3, C, 7, 6, FN, 3, 3)
    plan = new_plan(Geometry(3, C, 7, 6, FN, 3, 3, (1, 1), (1, 1)), np.float32, algorithm=algorithm)
    out, cache = plan.forward(x, Wt, b)
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    dx, dW, db = plan.backward(dout, cache, Wt, input_grad=False)
    _, want_dW, want_db = plan.backward(dout, cache, Wt)
    assert dx is None
    np.testing.assert_array_equal(dW, want_dW)
    np.testing.assert_array_equal(db, want_db)


@needs_kernels
@pytest.mark.parametrize("N, C, H, W, FN, KH, KW, pad", [SHAPES[1], SHAPES[4], SHAPES[5]])
def test_a_fused_relu_gives_the_bits_of_the_convolution_then_the_relu(split, weight_grad, N, C, H, W, FN, KH, KW,
                                                                      pad):
    x, Wt, b = _case(N, C, H, W, FN, KH, KW, seed=4)
    x[0, 0, 1, 1] = np.nan  # NaN must come through the ReLU as NumPy's maximum lets it (a NaN loss stops training)
    plan = new_plan(Geometry(N, C, H, W, FN, KH, KW, (1, 1), pad), np.float32, split, algorithm="direct")
    assert_fused_relu_is_the_convolution_then_the_relu(plan, x, Wt, b)


def assert_fused_relu_is_the_convolution_then_the_relu(plan, x, Wt, b):
    """``plan``'s fused ReLU against its convolution then the ReLU layer's ops, forward and backward, bit for bit;
    ``x`` holds a NaN, which must come through."""
    fused, fcache = plan.forward(x, Wt, b, relu=True)
    assert np.isnan(fused).any()
    conv, ccache = plan.forward(x, Wt, b)
    one = BatchSplitter(threads=1)
    y, mask = numpy_split.relu_forward(one, conv)
    assert mask.any() and not mask.all()  # the ReLU cuts somewhere: the test means something
    np.testing.assert_array_equal(fused.view(np.uint32), y.view(np.uint32))
    dout = np.random.default_rng(5).standard_normal(fused.shape).astype(np.float32)
    got = plan.backward(dout, fcache, Wt)
    want = plan.backward(numpy_split.relu_backward(one, dout, mask), ccache, Wt)
    for name, g, w in zip(("dx", "dW", "db"), got, want):
        np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32), err_msg=name)


@needs_kernels
def test_denormals_are_flushed_inside_the_kernels_and_the_threads_rounding_is_restored():
    # 1e-20 * 1e-20 = 1e-40 is below float32's normal range: inside the kernels (FTZ/DAZ) it is 0, and
    # after the call this thread's own float32 arithmetic still makes the denormal (MXCSR restored).
    x = np.full((1, 1, 3, 3), 1e-20, np.float32)
    Wt = np.full((2, 1, 1, 1), 1e-20, np.float32)
    plan = new_plan(Geometry(1, 1, 3, 3, 2, 1, 1, (1, 1), (0, 0)), np.float32, algorithm="direct")
    out, cache = plan.forward(x, Wt, None)
    assert not out.any()  # flushed, not 1e-40
    dx, dW, _ = plan.backward(np.full(out.shape, 1e-20, np.float32), cache, Wt)
    assert not dx.any() and not dW.any()
    assert np.multiply(np.float32(1e-20), np.float32(1e-20)) > 0  # NumPy after the kernels: a denormal, not 0

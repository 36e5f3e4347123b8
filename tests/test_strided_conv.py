"""Strided convolutions on the direct kernels by space-to-depth (backends/strided_conv.py) against float64.

The reference is test_direct_conv's definition at stride 1, sampled every stride-th output; its gradients
are those of the stride-1 convolution for a dout that is zero between the strided outputs. The shapes
walk through strides 2 and 3 (and unequal ones), filters that the stride divides (no zero taps) and that
it doesn't (zero-padded taps), odd sizes, pads 0..KH-1, input pixels no output reads (their dx is 0),
and AlexNet's 11x11 stride 4. Skipped as test_direct_conv is, where the kernels are unavailable.
"""

import numpy as np
import pytest
import test_direct_conv
from test_direct_conv import (
    _case,
    assert_fused_relu_is_the_convolution_then_the_relu,
    needs_kernels,
    reference,
    reference_grads,
)
from tolerance import assert_close

from xpnet import backends
from xpnet.backends import direct_conv, strided_conv
from xpnet.backends.numpy_conv_plan import Geometry, new_plan

split = test_direct_conv.split  # the fixture: one thread, and three batch slices

SHAPES = [  # N, C, H, W, FN, KH, KW, stride, pad
    (3, 1, 28, 28, 8, 4, 4, (2, 2), (1, 1)),  # DCGAN's D.conv1: 15x15 of 4 channels, 2x2 filters
    (2, 16, 14, 14, 12, 4, 4, (2, 2), (1, 1)),  # D.conv2's kind: 8x8 of 64 channels, 7x7 out
    (2, 3, 11, 13, 5, 3, 3, (3, 3), (0, 2)),  # stride 3 dividing the filter: 1x1 inner filters
    (2, 4, 9, 7, 6, 3, 3, (2, 2), (1, 2)),  # 3x3 stride 2: zero taps
    (1, 2, 16, 10, 7, 5, 5, (3, 3), (4, 3)),  # 5x5 stride 3, the largest pads
    (2, 3, 10, 12, 5, 4, 3, (2, 3), (3, 0)),  # unequal strides, filter sides and pads
    (2, 2, 10, 11, 3, 3, 3, (3, 3), (0, 0)),  # the last row and column no output reads: dx 0 there
    (1, 3, 35, 35, 4, 11, 11, (4, 4), (0, 0)),  # AlexNet's conv1 filter and stride
]


def strided_reference(x, W, b, stride, pad):
    """The float64 definition: the stride-1 reference's every stride-th output."""
    return reference(x, W, b, pad)[:, :, ::stride[0], ::stride[1]]


def strided_reference_grads(x, W, stride, pad, dout):
    """(dx, dW, db) of :func:`strided_reference`: the stride-1 gradients of dout spread to the strided outputs."""
    KH, KW = W.shape[2:]
    full = np.zeros((*dout.shape[:2], x.shape[2] + 2 * pad[0] - KH + 1, x.shape[3] + 2 * pad[1] - KW + 1))
    full[:, :, ::stride[0], ::stride[1]] = dout
    return reference_grads(x, W, pad, full)


def _plan(shape, split=None):
    N, C, H, W, FN, KH, KW, stride, pad = shape
    plan = new_plan(Geometry(N, C, H, W, FN, KH, KW, stride, pad), np.float32, split, algorithm="direct")
    assert isinstance(plan, strided_conv.StridedPlan)
    return plan


def _check_grads(got, x, Wt, stride, pad, dout):
    N, FN, OH, OW = dout.shape
    KH, KW = Wt.shape[2:]
    for name, g, ref, terms in zip(("dx", "dW", "db"), got, strided_reference_grads(x, Wt, stride, pad, dout),
                                   (FN * KH * KW, N * OH * OW, N * OH * OW)):
        assert g.dtype == np.float32 and g.shape == ref.shape, name
        assert_close(g, ref, terms=terms, scale=3.0, dtype=np.float32, err_msg=name)


@needs_kernels
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:7])) + f"-s{s[7][0]}{s[7][1]}")
@pytest.mark.parametrize("weight_grad", ["taps", "pixels"])
def test_strided_convolution_and_its_gradients_match_the_definition(split, weight_grad, shape, monkeypatch):
    monkeypatch.setattr(direct_conv, "by_pixels", lambda g: weight_grad == "pixels")
    N, C, H, W, FN, KH, KW, stride, pad = shape
    x, Wt, b = _case(N, C, H, W, FN, KH, KW)
    plan = _plan(shape, split)
    out, cache = plan.forward(x, Wt, b)
    want = strided_reference(x, Wt, b, stride, pad)
    assert out.dtype == np.float32 and out.shape == want.shape
    assert_close(out, want, terms=C * KH * KW + 1, scale=3.0, dtype=np.float32)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    kept = dout.copy()
    _check_grads(plan.backward(dout, cache, Wt), x, Wt, stride, pad, dout)
    np.testing.assert_array_equal(dout, kept)  # the incoming gradient is not touched


@needs_kernels
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3], SHAPES[6]])
def test_input_grad_and_weight_grad_need_no_forward_pass_and_leave_a_kept_one_alone(split, shape):
    N, C, H, W, FN, KH, KW, stride, pad = shape
    x, Wt, b = _case(N, C, H, W, FN, KH, KW)
    other, _, _ = _case(N, C, H, W, FN, KH, KW, seed=7)
    plan = _plan(shape, split)
    out, cache = plan.forward(x, Wt, b)  # kept for the backward pass below
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    dx = plan.input_grad(dout, Wt)
    dW, db = plan.weight_grad(other, dout)
    _check_grads((dx, dW, db), other, Wt, stride, pad, dout)
    _check_grads(plan.backward(dout, cache, Wt), x, Wt, stride, pad, dout)  # x's, not other's


@needs_kernels
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3]])
def test_an_inference_forward_pass_then_backward_and_no_input_gradient(split, shape):
    N, C, H, W, FN, KH, KW, stride, pad = shape
    x, Wt, b = _case(N, C, H, W, FN, KH, KW)
    plan = _plan(shape, split)
    out, cache = plan.forward(x, Wt, b, keep=False)
    plan.forward(x[::-1].copy(), Wt, b, keep=False)  # another inference pass over the scratch copy
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    _check_grads(plan.backward(dout, cache, Wt), x, Wt, stride, pad, dout)
    dx, dW, db = plan.backward(dout, cache, Wt, input_grad=False)
    assert dx is None
    _check_grads((plan.input_grad(dout, Wt), dW, db), x, Wt, stride, pad, dout)


@needs_kernels
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[4]])
def test_a_fused_relu_gives_the_bits_of_the_convolution_then_the_relu(split, shape):
    N, C, H, W, FN, KH, KW, stride, pad = shape
    x, Wt, b = _case(N, C, H, W, FN, KH, KW, seed=4)
    x[0, 0, 1, 1] = np.nan
    assert_fused_relu_is_the_convolution_then_the_relu(_plan(shape, split), x, Wt, b)


@needs_kernels
def test_auto_takes_strides_that_divide_the_filter_and_direct_takes_any():
    def pick(k, stride, dtype=np.float32, algorithm="auto"):
        return type(new_plan(Geometry(2, 3, 12, 12, 4, k, k, stride, (1, 1)), dtype, algorithm=algorithm)).__name__

    assert pick(4, (2, 2)) == "StridedPlan"
    assert pick(6, (3, 3)) == "StridedPlan"
    assert pick(3, (2, 2)) == "ConvPlan"  # zero taps: im2col
    assert pick(3, (2, 2), algorithm="direct") == "StridedPlan"
    assert pick(4, (2, 2), np.float64) == "ConvPlan"
    assert pick(4, (2, 2), algorithm="im2col") == "ConvPlan"


@needs_kernels
def test_a_dcgan_discriminator_step_agrees_with_the_im2col_backend(monkeypatch):
    from xpnet.models import Discriminator

    x = np.random.default_rng(3).standard_normal((6, 1, 28, 28)).astype(np.float32)
    grads = []
    for conv in ("auto", "im2col"):
        monkeypatch.setattr(backends.get("numpy"), "conv", conv)  # the layers run on the arrays' backend
        D = Discriminator(widths=(8, 16), seed=0)
        D.loss(x, np.ones((6, 1), np.float32))
        D.backward()
        plans = [p for name in ("conv1", "conv2") for p in D.net.layers[name]._ws["plans"].values()]
        assert {type(p).__name__ for p in plans} == {"StridedPlan" if conv == "auto" else "ConvPlan"}
        grads.append({k: np.array(v) for k, v in D.grads.items()})
    for name in set(grads[0]) - {"conv2.b"}:  # BatchNorm follows conv2: its bias's gradient is 0, both are noise
        scale = np.abs(grads[1][name]).max() + 1e-30
        assert_close(grads[0][name], grads[1][name], terms=6 * 14 * 14 * 16, scale=scale, dtype=np.float32,
                     err_msg=name)

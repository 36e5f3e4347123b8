"""Conv2DTranspose through the backend's convolution plans, and the plans' two halves of backward.

The transposed convolution is the adjoint of the convolution that maps its output's shape back to its
input's (numpy_conv_plan.transposed_geometry): the NumPy backend runs its forward as that plan's
``input_grad`` and its backward as the plan's forward and filter gradient. The layer is checked here in
float32 against a float64 reference worked out from the definition (each input pixel scatters its filter
into the output), on DCGAN's generator shapes and odd ones, on every backend; the plans' ``input_grad``
and ``weight_grad`` against their own ``backward``, which shares their arithmetic (so: the same bits).
"""

import numpy as np
import pytest
from test_direct_conv import needs_kernels
from tolerance import assert_close

from xpnet import backends
from xpnet.backends import direct_conv, numpy_split, strided_conv
from xpnet.backends.cpu_threads import BatchSplitter
from xpnet.backends.numpy_backend import NumpyBackend
from xpnet.backends.numpy_conv_plan import ConvPlan, Geometry, new_plan, transposed_geometry
from xpnet.layers import Conv2DTranspose


def reference(x, W, b, stride, pad, output_pad, dout):
    """``(out, dx, dW, db)`` of the transposed convolution in float64, by its definition: each input pixel
    (i, j) adds x * W[c] to the window at (i * SH, j * SW) of an uncropped canvas; pad crops each side."""
    x, W, dout = x.astype(np.float64), W.astype(np.float64), dout.astype(np.float64)
    N, C, H, Wd = x.shape
    _, FN, KH, KW = W.shape
    (SH, SW), (PH, PW), (OPH, OPW) = stride, pad, output_pad
    full = np.zeros((N, FN, (H - 1) * SH + KH + OPH, (Wd - 1) * SW + KW + OPW))
    OH, OW = full.shape[2] - 2 * PH, full.shape[3] - 2 * PW
    dfull = np.zeros_like(full)
    dfull[:, :, PH:PH + OH, PW:PW + OW] = dout
    dx, dW = np.zeros_like(x), np.zeros_like(W)
    for kh in range(KH):
        for kw in range(KW):
            win = (..., slice(kh, kh + SH * (H - 1) + 1, SH), slice(kw, kw + SW * (Wd - 1) + 1, SW))
            full[win] += np.einsum("nchw,cf->nfhw", x, W[:, :, kh, kw])
            dx += np.einsum("nfhw,cf->nchw", dfull[win], W[:, :, kh, kw])
            dW[:, :, kh, kw] = np.einsum("nchw,nfhw->cf", x, dfull[win])
    out = full[:, :, PH:PH + OH, PW:PW + OW] + b.astype(np.float64).reshape(1, -1, 1, 1)
    return out, dx, dW, dout.sum(axis=(0, 2, 3))


CASES = {  # C, FN, kernel, stride, pad, output_pad, input (N, H, W)
    "dcgan_deconv1": (100, 64, 7, 1, 0, 0, (3, 1, 1)),  # one window over the whole 7x7 image (GemmLayout)
    "3x2_from_1x1_thin": (3, 2, (3, 2), 1, 0, 0, (3, 1, 1)),  # the same with thin columns (BatchedLayout)
    "dcgan_deconv2": (64, 32, 4, 2, 1, 0, (2, 7, 7)),
    "dcgan_deconv3": (32, 1, 4, 2, 1, 0, (2, 14, 14)),
    "3x3_s1_p1_direct": (6, 5, 3, 1, 1, 0, (3, 6, 7)),  # a shape the direct kernels run
    "3x3_s1_p0": (4, 7, 3, 1, 0, 0, (2, 5, 4)),
    "5x5_s1_p3_C1": (1, 4, 5, 1, 3, 0, (2, 7, 6)),  # one input channel
    "3x3_s2_p1_outpad1": (3, 2, 3, 2, 1, 1, (2, 4, 5)),
    "rect_s3_outpad": (2, 3, (3, 4), 3, (2, 1), (2, 1), (2, 3, 4)),  # stride 3, pad up to KH - 1
    "4x4_s3_p3_FN1": (5, 1, 4, 3, 3, 2, (2, 4, 3)),  # one output channel
    "2x2_s2_p0": (4, 4, 2, 2, 0, 0, (2, 3, 3)),
    "3x3_s1_p2_pad_at_kernel_reach": (3, 3, 3, 1, 2, 0, (2, 6, 6)),
    "1x1_s2_p1_pad_over_kernel": (2, 3, 1, 2, 1, 1, (2, 5, 5)),  # pad >= kernel: the conv plan crops
}


def _layer_and_data(case, backend, dtype=np.float32):
    C, FN, kernel, stride, pad, output_pad, (N, H, Wd) = CASES[case]
    layer = Conv2DTranspose(C, FN, kernel, stride, pad, output_pad, dtype=dtype, backend=backend)
    rng = np.random.default_rng(7)
    W = rng.standard_normal(layer.params["W"].shape).astype(dtype)
    b = rng.standard_normal(FN).astype(dtype)
    layer.params["W"], layer.params["b"] = backend.asarray(W), backend.asarray(b)
    x = rng.standard_normal((N, C, H, Wd)).astype(dtype)
    dout = rng.standard_normal(layer.output_shape(x.shape)).astype(dtype)
    return layer, x, W, b, dout


def _check_against_reference(layer, backend, x, W, b, dout, dtype):
    out = layer.forward(backend.asarray(x), train=True)
    kept = dout.copy()
    d = backend.asarray(dout)
    dx = layer.backward(d)
    np.testing.assert_array_equal(backend.asnumpy(d), kept)  # the incoming gradient is not touched
    want = reference(x, W, b, layer.stride, layer.pad, layer.output_pad, dout)
    N, _, OH, OW = dout.shape
    terms = {"out": layer.C * layer.KH * layer.KW + 1, "dx": layer.FN * layer.KH * layer.KW,
             "dW": N * x.shape[2] * x.shape[3], "db": N * OH * OW}
    for name, got, ref in zip(("out", "dx", "dW", "db"), (out, dx, layer.grads["W"], layer.grads["b"]), want):
        got = backend.asnumpy(got)
        assert got.dtype == dtype and got.shape == ref.shape, name
        assert_close(got, ref, terms=terms[name], scale=3.0, dtype=dtype, err_msg=name)


@pytest.mark.parametrize("case", list(CASES))
def test_the_layer_matches_its_definition(backend, case):
    layer, x, W, b, dout = _layer_and_data(case, backend)
    _check_against_reference(layer, backend, x, W, b, dout, np.float32)


@pytest.fixture(params=[1, 3], ids=["one-thread", "three-slices"])
def numpy_backend(request, monkeypatch):
    """The NumPy backend, its convolutions on "auto" whatever XPNET_CONV says, on one thread or in three
    batch slices. The process's own: layers run on their arrays' backend (``backends.of``), not on one
    made here."""
    be = backends.get("numpy")
    monkeypatch.setattr(be, "conv", "auto")
    split = BatchSplitter(threads=request.param)
    if request.param > 1:
        monkeypatch.setattr(numpy_split, "MIN_SLICE", 1)
        if split.threads == 1:
            pytest.skip("no BLAS whose thread count threadpoolctl can set: the split is off")
    monkeypatch.setattr(be, "_splitter", split)
    return be


@pytest.mark.parametrize("case", list(CASES))
def test_the_layer_runs_on_the_plan_that_suits_its_shape(numpy_backend, case):
    layer, x, W, b, dout = _layer_and_data(case, numpy_backend)
    _check_against_reference(layer, numpy_backend, x, W, b, dout, np.float32)
    (plan,) = layer._ws["plans"].values()
    g = plan.g
    assert (g.N, g.C, g.FN, g.KH, g.KW, g.stride, g.pad) == (
        x.shape[0], layer.FN, layer.C, layer.KH, layer.KW, layer.stride, layer.pad)
    assert (g.H, g.W, g.OH, g.OW) == (*dout.shape[2:], *x.shape[2:])
    if direct_conv.why_not(g, np.float32) is not None:
        assert isinstance(plan, ConvPlan)
    elif g.stride == (1, 1):
        assert isinstance(plan, direct_conv.DirectPlan if direct_conv.suits(g) else ConvPlan)
    else:
        assert isinstance(plan, strided_conv.StridedPlan if strided_conv.suits(g) else ConvPlan)


@needs_kernels
def test_the_direct_kernels_run_where_they_suit_and_im2col_where_they_do_not(monkeypatch):
    be = backends.get("numpy")  # the layers' (their arrays'), on "auto" whatever XPNET_CONV says
    monkeypatch.setattr(be, "conv", "auto")

    def plan_of(case):
        layer, x, *_ = _layer_and_data(case, be)
        layer.forward(x)
        return type(next(iter(layer._ws["plans"].values())))

    assert plan_of("3x3_s1_p1_direct") is direct_conv.DirectPlan
    assert plan_of("dcgan_deconv1") is ConvPlan  # a 1x1 input: the full convolution would be mostly padding
    assert plan_of("dcgan_deconv2") is strided_conv.StridedPlan  # stride 2, dividing the 4x4 filter
    assert plan_of("3x3_s2_p1_outpad1") is ConvPlan  # a stride that does not divide the filter


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_dtypes_stay_on_im2col_and_keep_their_dtype(dtype):
    be = NumpyBackend()
    layer, x, W, b, dout = _layer_and_data("3x3_s1_p1_direct", be, dtype)
    if dtype == np.float64:
        _check_against_reference(layer, be, x, W, b, dout, dtype)
    else:
        out = layer.forward(x, train=True)
        dx = layer.backward(dout)
        assert out.dtype == dx.dtype == layer.grads["W"].dtype == layer.grads["b"].dtype == dtype
    (plan,) = layer._ws["plans"].values()
    assert isinstance(plan, ConvPlan)


def test_without_the_input_gradient_the_parameters_get_the_same_gradients(backend):
    layer, x, *_, dout = _layer_and_data("3x3_s2_p1_outpad1", backend)
    layer.forward(backend.asarray(x), train=True)
    layer.backward(backend.asarray(dout))
    want = {k: backend.asnumpy(v).copy() for k, v in layer.grads.items()}
    assert layer.backward_params(backend.asarray(dout)) is None
    for k, v in want.items():
        assert_close(backend.asnumpy(layer.grads[k]), v, terms=dout[0].size * len(dout), scale=3.0, err_msg=k)


def test_the_geometry_maps_the_output_back_to_the_input_and_refuses_a_large_output_pad():
    g = transposed_geometry((64, 64, 7, 7), (64, 32, 4, 4), (2, 2), (1, 1), (0, 0))
    assert g == Geometry(64, 32, 14, 14, 64, 4, 4, (2, 2), (1, 1)) and (g.OH, g.OW) == (7, 7)
    g = transposed_geometry((2, 3, 4, 5), (3, 2, 3, 3), (2, 2), (1, 1), (1, 0))
    assert (g.H, g.W, g.OH, g.OW) == (8, 9, 4, 5)
    with pytest.raises(ValueError, match=r"output_pad must be smaller than the stride on each axis, got "
                                         r"output_pad=\(2, 0\) for stride=\(2, 2\)"):
        transposed_geometry((2, 3, 4, 5), (3, 2, 3, 3), (2, 2), (1, 1), (2, 0))


PLAN_SHAPES = [  # N, C, H, W, FN, KH, KW, stride, pad
    (3, 4, 7, 6, 6, 3, 3, (1, 1), (1, 1)),  # im2col: dx by col2im (FN > C)
    (3, 16, 7, 6, 4, 3, 3, (1, 1), (1, 1)),  # im2col: dx by the full convolution (FN <= C)
    (2, 2, 9, 8, 3, 3, 3, (1, 1), (0, 2)),  # thin columns (BatchedLayout)
    (2, 8, 14, 14, 6, 4, 4, (2, 2), (1, 1)),  # strided (direct: by space-to-depth)
    (2, 3, 7, 7, 5, 7, 7, (1, 1), (0, 0)),  # one window over the whole image
    (3, 2, 3, 2, 4, 3, 2, (1, 1), (0, 0)),  # the same, thin columns
]


@pytest.mark.parametrize("algorithm", [pytest.param("direct", marks=needs_kernels), "im2col"])
@pytest.mark.parametrize("N, C, H, W, FN, KH, KW, stride, pad", PLAN_SHAPES)
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "no-keep"])
def test_input_grad_and_weight_grad_are_backward_in_halves(algorithm, keep, N, C, H, W, FN, KH, KW, stride, pad):
    g = Geometry(N, C, H, W, FN, KH, KW, stride, pad)
    if algorithm == "direct" and direct_conv.why_not(g, np.float32):
        pytest.skip(f"the direct kernels can't run {g}")
    rng = np.random.default_rng(11)
    x, Wt, b = (rng.standard_normal(s).astype(np.float32) for s in ((N, C, H, W), (FN, C, KH, KW), FN))
    plan = new_plan(g, np.float32, algorithm=algorithm)
    out, cache = plan.forward(x, Wt, b, keep=keep)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    want_dx, want_dW, want_db = plan.backward(dout, cache, Wt)
    dx = plan.input_grad(dout, Wt)
    dW, db = plan.weight_grad(x, dout)
    for name, got, want in (("dx", dx, want_dx), ("dW", dW, want_dW), ("db", db, want_db)):
        assert got.dtype == np.float32 and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)  # the same arithmetic: the same bits


@needs_kernels
def test_the_halves_of_a_direct_plan_leave_out_a_fused_relu():
    g = Geometry(2, 4, 6, 6, 5, 3, 3, (1, 1), (1, 1))
    rng = np.random.default_rng(12)
    x, Wt, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 4, 6, 6), (5, 4, 3, 3), 5))
    plan = new_plan(g, np.float32, algorithm="direct")
    plain = plan.forward(x, Wt, b)
    dout = rng.standard_normal(plain[0].shape).astype(np.float32)
    _, relu_cache = plan.forward(x, Wt, b, relu=True)
    want = plan.backward(dout, plain[1], Wt)
    assert not np.array_equal(plan.backward(dout, relu_cache, Wt)[0], want[0])  # the mask matters here
    np.testing.assert_array_equal(plan.input_grad(dout, Wt), want[0])
    for got, w in zip(plan.weight_grad(x, dout), want[1:]):
        np.testing.assert_array_equal(got, w)

"""Conv2DTranspose, Upsample2D, LeakyReLU and the two new losses against values worked out independently."""

import numpy as np
import pytest

from xpnet import init
from xpnet.errors import ShapeError
from xpnet.layers import (
    Conv2D,
    Conv2DTranspose,
    LeakyReLU,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    SoftmaxCrossEntropy2D,
    Upsample2D,
)


def _scatter_reference(x, W, b, stride, pad, output_pad):
    """Transposed convolution by its definition: every input pixel adds W[c] times itself to a window."""
    N, C, H, Wd = x.shape
    _, FN, KH, KW = W.shape
    (SH, SW), (PH, PW), (OPH, OPW) = stride, pad, output_pad
    full = np.zeros((N, FN, (H - 1) * SH + KH + OPH, (Wd - 1) * SW + KW + OPW))
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(Wd):
                    full[n, :, i * SH:i * SH + KH, j * SW:j * SW + KW] += x[n, c, i, j] * W[c]
    OH, OW = full.shape[2] - 2 * PH, full.shape[3] - 2 * PW  # pad crops each side; output_pad stays
    return full[:, :, PH:PH + OH, PW:PW + OW] + b.reshape(1, -1, 1, 1)


@pytest.mark.parametrize("cfg", [
    dict(kernel_size=3, stride=1, pad=0, output_pad=0, shape=(2, 2, 3, 4)),
    dict(kernel_size=4, stride=2, pad=1, output_pad=0, shape=(1, 3, 3, 3)),
    dict(kernel_size=3, stride=2, pad=1, output_pad=1, shape=(2, 2, 4, 3)),
    dict(kernel_size=(3, 2), stride=(2, 3), pad=(1, 0), output_pad=(1, 2), shape=(1, 2, 3, 2)),
])
def test_conv_transpose_matches_its_definition(backend, cfg, rng):
    cfg = dict(cfg)  # the parametrised dict is shared by every backend's case
    shape = cfg.pop("shape")
    layer = Conv2DTranspose(shape[1], 3, rng=rng, dtype="float64", **cfg)
    layer.params["b"] = backend.asarray(rng.standard_normal(3))
    x = rng.standard_normal(shape)
    out = backend.asnumpy(layer.forward(backend.asarray(x)))
    ref = _scatter_reference(x, backend.asnumpy(layer.params["W"]), backend.asnumpy(layer.params["b"]),
                             layer.stride, layer.pad, layer.output_pad)
    assert out.shape == ref.shape == layer.output_shape(shape)
    # a handful of float64 products per output: rounding at 1e-15 relative; 1e-12 is far above it
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_conv_transpose_is_the_adjoint_of_conv2d(backend, rng):
    """<deconv(x), z> = <x, conv(z)> with shared weights and no bias: the definition of "transposed"."""
    deconv = Conv2DTranspose(3, 2, 3, 2, 1, 1, rng=rng, dtype="float64")
    conv = Conv2D(2, 3, 3, 2, 1, dtype="float64")
    conv.params["W"] = deconv.params["W"].copy()  # (3, 2, 3, 3): conv maps 2 -> 3 channels
    x = backend.asarray(rng.standard_normal((2, 3, 4, 5)))
    y = deconv.forward(x)
    assert y.shape == (2, 2, 8, 10)  # and conv maps (8, 10) back to (4, 5)
    z = backend.asarray(rng.standard_normal(y.shape))
    lhs, rhs = float((y * z).sum()), float((x * conv.forward(z)).sum())
    assert abs(lhs - rhs) < 1e-12 * (abs(lhs) + 1) * 100  # ~300 products summed: 100x float64 eps is ample


def test_bilinear_init_upsamples_like_bilinear_interpolation_inside(backend, rng):
    x = backend.asarray(rng.standard_normal((2, 3, 5, 6)))
    for s in (2, 4):
        deconv = Conv2DTranspose(3, 3, 2 * s, s, s // 2, weight_init="bilinear", dtype="float64")
        up = Upsample2D(s)
        a, b = backend.asnumpy(deconv.forward(x)), backend.asnumpy(up.forward(x))
        assert a.shape == b.shape == (2, 3, 5 * s, 6 * s)
        inner = slice(s, -s)  # borders differ: the deconvolution sees zeros outside, bilinear clamps
        np.testing.assert_allclose(a[:, :, inner, inner], b[:, :, inner, inner], rtol=1e-12, atol=1e-12)


def test_bilinear_kernel_values_and_channel_check():
    W = init.bilinear_kernel((2, 2, 4, 4))
    tent = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(W[1, 1], np.outer(tent, tent))
    assert not W[0, 1].any() and not W[1, 0].any()
    np.testing.assert_allclose(init.bilinear_kernel((1, 1, 3, 3))[0, 0], np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    with pytest.raises(ValueError, match="in_channels == out_channels, got 2 and 3"):
        Conv2DTranspose(2, 3, 4, 2, 1, weight_init="bilinear")


def test_conv_transpose_errors():
    with pytest.raises(ValueError, match="output_pad must be smaller than the stride"):
        Conv2DTranspose(1, 1, 3, stride=2, output_pad=2)
    layer = Conv2DTranspose(2, 1, 3)
    with pytest.raises(ShapeError, match="expected 2 input channels, got shape"):
        layer.forward(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ShapeError, match="empty output"):
        Conv2DTranspose(2, 1, 1, pad=1).forward(np.zeros((1, 2, 1, 1), np.float32))


def _bilinear_reference(x, sh, sw):
    """Half-pixel bilinear resize written per output pixel."""
    N, C, H, W = x.shape
    out = np.zeros((N, C, H * sh, W * sw))

    def taps(o, s, n):
        src = min(max((o + 0.5) / s - 0.5, 0.0), n - 1)
        i0 = int(np.floor(src))
        return i0, min(i0 + 1, n - 1), src - i0

    for i in range(H * sh):
        a0, a1, fa = taps(i, sh, H)
        for j in range(W * sw):
            b0, b1, fb = taps(j, sw, W)
            out[:, :, i, j] = ((1 - fa) * ((1 - fb) * x[:, :, a0, b0] + fb * x[:, :, a0, b1])
                               + fa * ((1 - fb) * x[:, :, a1, b0] + fb * x[:, :, a1, b1]))
    return out


@pytest.mark.parametrize("scale", [2, 3, (2, 3)])
def test_upsample_bilinear_matches_per_pixel_formula(backend, scale, rng):
    x = rng.standard_normal((2, 2, 3, 4))
    layer = Upsample2D(scale)
    out = backend.asnumpy(layer.forward(backend.asarray(x)))
    np.testing.assert_allclose(out, _bilinear_reference(x, *layer.scale), rtol=1e-12, atol=1e-12)


def test_upsample_nearest_repeats_pixels_and_checks_arguments(backend, rng):
    x = rng.standard_normal((1, 2, 3, 2)).astype(np.float32)
    out = backend.asnumpy(Upsample2D((2, 3), "nearest").forward(backend.asarray(x)))
    np.testing.assert_array_equal(out, x.repeat(2, axis=2).repeat(3, axis=3))
    with pytest.raises(ValueError, match="mode must be one of bilinear, nearest, got 'cubic'"):
        Upsample2D(2, "cubic")
    with pytest.raises(ValueError, match="scale must be >= 1"):
        Upsample2D(0)


def test_leaky_relu_values(backend):
    x = np.array([[-2.0, -0.5, 0.0, 3.0]], np.float32)
    layer = LeakyReLU(0.2)
    np.testing.assert_allclose(backend.asnumpy(layer.forward(backend.asarray(x))), [[-0.4, -0.1, 0.0, 3.0]],
                               rtol=1e-7)
    dx = backend.asnumpy(layer.backward(backend.asarray(np.ones_like(x))))
    np.testing.assert_allclose(dx, [[0.2, 0.2, 0.2, 1.0]], rtol=1e-7)
    with pytest.raises(ValueError, match=r"slope must be in \[0, 1\), got 1.5"):
        LeakyReLU(1.5)


def test_softmax_cross_entropy_2d_equals_per_pixel_rows(backend, rng):
    """Over (N, K, H, W) it is the row-wise loss over the N*H*W pixels that are not ignored."""
    y = rng.standard_normal((2, 5, 3, 4))
    t = rng.integers(0, 5, size=(2, 3, 4))
    t[0, 1] = -1
    rows, labels = y.transpose(0, 2, 3, 1).reshape(-1, 5), t.reshape(-1)
    keep = labels != -1
    ref = float(SoftmaxCrossEntropy().forward(backend.asarray(rows[keep]), labels[keep]))
    loss = float(SoftmaxCrossEntropy2D(ignore_index=-1).forward(backend.asarray(y), t))
    assert abs(loss - ref) < 1e-14 * 24 * 10  # 20 terms of a few ulps each
    with pytest.raises(ShapeError, match=r"labels must be in \[0, 5\) or -100"):
        SoftmaxCrossEntropy2D().forward(backend.asarray(y), t)
    with pytest.raises(ShapeError, match=r"expected labels of shape \(2, 3, 4\), got \(2, 4, 3\)"):
        SoftmaxCrossEntropy2D().forward(backend.asarray(y), t.transpose(0, 2, 1))


def test_softmax_cross_entropy_2d_all_ignored_and_large_logits(backend):
    layer = SoftmaxCrossEntropy2D(ignore_index=7)
    y = backend.asarray(np.array([[[[1e4]], [[-1e4]]]], np.float32))  # (1, 2, 1, 1)
    assert float(layer.forward(y, np.array([[[7]]]))) == 0.0
    assert not backend.asnumpy(layer.backward()).any()
    loss = float(layer.forward(y, np.array([[[1]]])))
    assert loss == pytest.approx(2e4, rel=1e-6)  # -log softmax = 2e4, finite


def test_sigmoid_binary_cross_entropy_values(backend):
    y = np.array([[-3.0], [0.0], [2.0], [40.0], [-40.0]])
    t = np.array([[0.0], [1.0], [1.0], [0.0], [1.0]])
    layer = SigmoidBinaryCrossEntropy()
    loss = float(layer.forward(backend.asarray(y), t))
    # -log(1 - s(-3)) = log(1 + e^-3); -log s(0) = log 2; -log s(2) = log(1 + e^-2); then ~40 twice:
    # log(1 + e^40) = 40 + log(1 + e^-40), which a naive log(sigmoid) would turn into -log(0) = inf.
    terms = [np.log1p(np.exp(-3)), np.log(2), np.log1p(np.exp(-2)), 40 + np.log1p(np.exp(-40)),
             40 + np.log1p(np.exp(-40))]
    assert loss == pytest.approx(np.mean(terms), rel=1e-14)
    s = 1 / (1 + np.exp(-y))
    np.testing.assert_allclose(backend.asnumpy(layer.backward()), (s - t) / 5, rtol=1e-12, atol=1e-300)
    with pytest.raises(ShapeError, match=r"targets must have shape \(5, 1\), got \(5,\)"):
        layer.forward(backend.asarray(y), t[:, 0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_new_losses_keep_dtype(backend, dtype, rng):
    y4 = backend.asarray(rng.standard_normal((2, 3, 2, 2)), dtype=dtype)
    for layer, y, t in ((SoftmaxCrossEntropy2D(), y4, rng.integers(0, 3, (2, 2, 2))),
                        (SigmoidBinaryCrossEntropy(), y4, rng.random((2, 3, 2, 2)))):
        loss = layer.forward(y, t)
        assert loss.shape == () and loss.dtype == np.dtype(dtype)
        assert layer.backward().dtype == np.dtype(dtype)

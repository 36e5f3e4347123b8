"""Backward passes against central differences in float64, for every layer, loss and model, on every backend.

The checker reports norm-based relative errors ||a - n|| / (||a|| + ||n||); measured values are around
1e-10 for these shapes, so 1e-7 leaves a wide margin while still catching any real mistake (a wrong
term gives 1e-3 or more, see ``test_checker_catches_a_wrong_gradient``). Inputs are random normal, so
ReLU kinks and max-pool ties are hit with probability ~0.
"""

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import gradcheck
from xpnet.layers import (
    Affine,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Conv2DTranspose,
    Dropout,
    Flatten,
    LeakyReLU,
    MaxPool2D,
    MeanSquaredError,
    ReLU,
    Sequential,
    Sigmoid,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    SoftmaxCrossEntropy2D,
    Tanh,
    Upsample2D,
)
from xpnet.models import FCN, MLP, DeepConvNet, Discriminator, Generator, Model, SimpleConvNet

TOL = 1e-7
F64 = "float64"


def _r():
    return np.random.default_rng(1)


# name -> (factory -> float64 layer, input shape)
LAYER_CASES = {
    "affine_2d": (lambda: Affine(5, 3, rng=_r(), dtype=F64), (4, 5)),
    "affine_4d": (lambda: Affine(2 * 3 * 3, 4, rng=_r(), dtype=F64), (2, 2, 3, 3)),
    "conv_3x3_s1_p1": (lambda: Conv2D(2, 3, 3, 1, 1, rng=_r(), dtype=F64), (2, 2, 5, 5)),
    "conv_3x3_s2_p0": (lambda: Conv2D(2, 3, 3, 2, 0, rng=_r(), dtype=F64), (2, 2, 7, 6)),
    "conv_2x2_s2_p1": (lambda: Conv2D(1, 2, 2, 2, 1, rng=_r(), dtype=F64), (2, 1, 5, 4)),
    "conv_rect_3x2_s21_p10": (lambda: Conv2D(2, 3, (3, 2), (2, 1), (1, 0), rng=_r(), dtype=F64), (2, 2, 6, 5)),
    "conv_rect_1x3_s12_p01": (lambda: Conv2D(3, 2, (1, 3), (1, 2), (0, 1), rng=_r(), dtype=F64), (1, 3, 4, 5)),
    # C*KH*KW >= 32: the NumPy backend's channel-major GEMM layout; FN <= C: dx by full convolution
    "conv_wide_3x3_p0": (lambda: Conv2D(4, 4, 3, 1, 0, rng=_r(), dtype=F64), (2, 4, 5, 5)),
    "conv_wide_3x3_p1": (lambda: Conv2D(4, 4, 3, 1, 1, rng=_r(), dtype=F64), (2, 4, 4, 5)),
    "conv_wide_3x3_p1_fn3": (lambda: Conv2D(4, 3, 3, 1, 1, rng=_r(), dtype=F64), (2, 4, 4, 5)),
    "conv_wide_3x3_p2": (lambda: Conv2D(4, 4, 3, 1, 2, rng=_r(), dtype=F64), (2, 4, 4, 4)),
    "conv_wide_3x3_p1_fn_gt_c": (lambda: Conv2D(4, 6, 3, 1, 1, rng=_r(), dtype=F64), (2, 4, 4, 5)),
    "conv_wide_3x3_s2_p1": (lambda: Conv2D(4, 3, 3, 2, 1, rng=_r(), dtype=F64), (2, 4, 5, 6)),
    "maxpool_2x2_s2": (lambda: MaxPool2D(2, 2), (2, 2, 4, 4)),
    "maxpool_2x2_s2_odd_size": (lambda: MaxPool2D(2, 2), (2, 2, 5, 5)),
    "maxpool_3x3_s2_p1": (lambda: MaxPool2D(3, 2, 1), (2, 2, 5, 5)),
    "maxpool_2x2_s1": (lambda: MaxPool2D(2, 1), (2, 2, 4, 5)),
    "maxpool_3x2_s21": (lambda: MaxPool2D((3, 2), (2, 1)), (1, 2, 5, 4)),
    "avgpool_2x2_s2": (lambda: AvgPool2D(2, 2), (2, 2, 4, 4)),
    "avgpool_2x2_s2_odd_size": (lambda: AvgPool2D(2, 2), (2, 2, 5, 5)),
    "avgpool_3x3_s2_p1": (lambda: AvgPool2D(3, 2, 1), (2, 2, 5, 5)),
    "avgpool_2x2_s1": (lambda: AvgPool2D(2, 1), (2, 2, 4, 5)),
    "relu": (lambda: ReLU(), (3, 4)),
    "sigmoid": (lambda: Sigmoid(), (3, 4)),
    "tanh": (lambda: Tanh(), (2, 3, 2)),
    "dropout_train": (lambda: Dropout(0.4, seed=5), (4, 6)),
    "batchnorm_2d_train": (lambda: BatchNorm(4, dtype=F64), (5, 4)),
    "batchnorm_4d_train": (lambda: BatchNorm(3, dtype=F64), (2, 3, 3, 3)),
    "flatten": (lambda: Flatten(), (2, 3, 2, 2)),
    "leaky_relu": (lambda: LeakyReLU(0.2), (3, 4)),
    "deconv_3x3_s1_p0": (lambda: Conv2DTranspose(2, 3, 3, rng=_r(), dtype=F64), (2, 2, 3, 4)),
    "deconv_4x4_s2_p1": (lambda: Conv2DTranspose(3, 2, 4, 2, 1, rng=_r(), dtype=F64), (2, 3, 3, 3)),
    "deconv_3x3_s2_p1_outpad1": (lambda: Conv2DTranspose(2, 2, 3, 2, 1, 1, rng=_r(), dtype=F64), (2, 2, 3, 4)),
    "deconv_rect_3x2_s21_p10": (lambda: Conv2DTranspose(2, 3, (3, 2), (2, 1), (1, 0), rng=_r(), dtype=F64),
                                (1, 2, 3, 4)),
    "deconv_7x7_from_1x1": (lambda: Conv2DTranspose(4, 2, 7, rng=_r(), dtype=F64), (3, 4, 1, 1)),
    "deconv_bilinear_8x8_s4_p2": (lambda: Conv2DTranspose(2, 2, 8, 4, 2, weight_init="bilinear", dtype=F64),
                                  (1, 2, 2, 3)),
    "upsample_bilinear_2": (lambda: Upsample2D(2), (2, 2, 3, 4)),
    "upsample_bilinear_3x2": (lambda: Upsample2D((3, 2)), (1, 2, 3, 3)),
    "upsample_nearest_2": (lambda: Upsample2D(2, "nearest"), (2, 1, 2, 3)),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_gradients(backend, case, rng):
    factory, shape = LAYER_CASES[case]
    layer = factory()
    x = backend.asarray(rng.standard_normal(shape))
    errors = gradcheck.check_layer(layer, x, train=True)
    assert set(errors) == {"x", *layer.params}
    assert max(errors.values()) < TOL, errors


def test_batchnorm_gradients_with_nontrivial_gamma_beta(backend, rng):
    bn = BatchNorm(3, dtype=F64)
    bn.params["gamma"] = backend.asarray(rng.standard_normal(3))
    bn.params["beta"] = backend.asarray(rng.standard_normal(3))
    errors = gradcheck.check_layer(bn, backend.asarray(rng.standard_normal((2, 3, 2, 3))), train=True)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)], ids=["2d", "4d"])
@pytest.mark.parametrize("trained", [False, True], ids=["never_trained", "after_training"])
def test_batchnorm_backward_after_inference_forward(backend, rng, shape, trained):
    # Inference mode: y = gamma (x - running_mean) / sqrt(running_var + eps) + beta with the statistics
    # constants (PyTorch's eval mode), so by hand dx = dout gamma / s, dgamma = sum(dout (x - rm) / s),
    # dbeta = sum(dout), s = sqrt(running_var + eps); and by central differences of that forward.
    bn = BatchNorm(3, dtype=F64)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    bn.params["gamma"], bn.params["beta"] = backend.asarray(gamma), backend.asarray(beta)
    if trained:  # running statistics away from (0, 1) and from the last batch's statistics
        for _ in range(3):
            bn.forward(backend.asarray(rng.standard_normal(shape) * 2 + 1), train=True)
    rm, rv = (backend.asnumpy(bn.buffers[k]).copy() for k in ("running_mean", "running_var"))
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    bshape, axes = (1, 3) + (1,) * (len(shape) - 2), (0,) if len(shape) == 2 else (0, 2, 3)
    s = np.sqrt(rv + 1e-5).reshape(bshape)
    bn.forward(backend.asarray(x), train=False)
    dx = backend.asnumpy(bn.backward(backend.asarray(dout)))
    count = dout.size // 3  # terms of each dgamma, dbeta sum
    assert_close(dx, dout * gamma.reshape(bshape) / s, terms=4, scale=np.abs(dx))
    assert_close(backend.asnumpy(bn.grads["gamma"]), (dout * (x - rm.reshape(bshape)) / s).sum(axis=axes),
                 terms=count + 4, scale=np.abs(dout * (x - rm.reshape(bshape)) / s).max())
    assert_close(backend.asnumpy(bn.grads["beta"]), dout.sum(axis=axes), terms=count, scale=np.abs(dout).max())
    errors = gradcheck.check_layer(bn, backend.asarray(x), train=False)
    assert set(errors) == {"x", "gamma", "beta"} and max(errors.values()) < TOL, errors
    np.testing.assert_array_equal(backend.asnumpy(bn.buffers["running_mean"]), rm)  # inference leaves them
    np.testing.assert_array_equal(backend.asnumpy(bn.buffers["running_var"]), rv)


def test_sequential_gradients(backend, rng):
    def net():
        return Sequential(Conv2D(1, 2, 3, pad=1, rng=_r(), dtype=F64), ReLU(), MaxPool2D(2), BatchNorm(2, dtype=F64),
                          Flatten(), Affine(2 * 2 * 2, 3, rng=_r(), dtype=F64), Tanh())

    x = backend.asarray(rng.standard_normal((3, 1, 4, 4)))
    assert gradcheck.check_layer(net(), x)["x"] < TOL
    # Sequential exposes its parameters as all_params; check them through a model with an MSE head.
    model = Model(net(), MeanSquaredError(), {})
    _randomize_biases(model, backend, rng)
    errors = gradcheck.check_model(model, x, rng.standard_normal((3, 3)))
    assert set(errors) == set(model.params) and len(errors) == 6
    assert max(errors.values()) < TOL, errors


class _WrongReLU(ReLU):
    def backward(self, dout):
        return super().backward(dout) * 1.01


def test_checker_catches_a_wrong_gradient(backend, rng):
    errors = gradcheck.check_layer(_WrongReLU(), backend.asarray(rng.standard_normal((3, 4))))
    assert errors["x"] > 1e-3


# -- losses: our own central differences over y ------------------------------------------------------


def _loss_numerical_gradient(backend, layer, y, t, eps=1e-6):
    yn = backend.asnumpy(y).astype(np.float64)
    grad = np.zeros_like(yn)
    for i in np.ndindex(yn.shape):
        yp, ym = yn.copy(), yn.copy()
        yp[i] += eps
        ym[i] -= eps
        lp = float(layer.forward(backend.asarray(yp), t))
        lm = float(layer.forward(backend.asarray(ym), t))
        grad[i] = (lp - lm) / (2 * eps)
    return grad


@pytest.mark.parametrize("labels", ["integer", "one_hot", "soft"])
def test_softmax_cross_entropy_gradient(backend, labels, rng):
    y = backend.asarray(rng.standard_normal((4, 5)) * 2)
    t = np.array([1, 0, 4, 4])
    if labels == "one_hot":
        t = np.eye(5)[t]
    elif labels == "soft":
        t = rng.random((4, 5))
        t /= t.sum(axis=1, keepdims=True)
    layer = SoftmaxCrossEntropy()
    layer.forward(y, t)
    analytic = layer.backward()
    numeric = _loss_numerical_gradient(backend, layer, y, t)
    assert gradcheck.relative_error(analytic, numeric) < TOL


def test_softmax_cross_entropy_gradient_scales_with_dout(backend, rng):
    y = backend.asarray(rng.standard_normal((3, 4)))
    layer = SoftmaxCrossEntropy()
    layer.forward(y, np.array([0, 1, 3]))
    np.testing.assert_allclose(backend.asnumpy(layer.backward(2.5)), 2.5 * backend.asnumpy(layer.backward()))


@pytest.mark.parametrize("ignore", [None, 4])
def test_softmax_cross_entropy_2d_gradient(backend, ignore, rng):
    y = backend.asarray(rng.standard_normal((2, 4, 3, 3)) * 2)
    t = rng.integers(0, 4, size=(2, 3, 3))
    if ignore is not None:
        t[0, 0, :] = t[1, 2, 1] = ignore
    layer = SoftmaxCrossEntropy2D(ignore_index=ignore)
    layer.forward(y, t)
    analytic = layer.backward()
    numeric = _loss_numerical_gradient(backend, layer, y, t)
    assert gradcheck.relative_error(analytic, numeric) < TOL
    if ignore is not None:  # ignored pixels get exactly no gradient
        assert float(abs(backend.asnumpy(analytic)[0, :, 0, :]).max()) == 0.0


@pytest.mark.parametrize("loss", [
    pytest.param((MeanSquaredError, (4, 3), lambda rng, shape: rng.standard_normal(shape)), id="mse_2d"),
    pytest.param((MeanSquaredError, (2, 2, 3), lambda rng, shape: rng.standard_normal(shape)), id="mse_3d"),
    pytest.param((SigmoidBinaryCrossEntropy, (5, 1), lambda rng, shape: rng.random(shape)), id="bce_2d"),
    pytest.param((SigmoidBinaryCrossEntropy, (2, 3, 2), lambda rng, shape: rng.random(shape)), id="bce_3d"),
])
def test_elementwise_loss_gradient(backend, loss, rng):
    cls, shape, targets = loss
    y = backend.asarray(rng.standard_normal(shape) * 3)
    t = targets(rng, shape)
    layer = cls()
    layer.forward(y, t)
    analytic = layer.backward()
    numeric = _loss_numerical_gradient(backend, layer, y, t)
    assert gradcheck.relative_error(analytic, numeric) < TOL


# -- models ------------------------------------------------------------------------------------------


def _randomize_biases(model, backend, rng):
    """Zero-initialised biases put ReLU inputs exactly on the kink wherever a row of inputs is all zero
    (a fully dropped row, say); random biases move them off it."""
    for name, p in model.params.items():
        if name.endswith(".b"):
            model.net.set_array(name, backend.asarray(rng.standard_normal(p.shape) * 0.1))


def test_mlp_with_batchnorm_and_dropout(backend, rng):
    model = MLP(input_size=6, hidden_size_list=(5, 4), output_size=3, use_batchnorm=True, use_dropout=True,
                dropout_ratio=0.3, seed=2, dtype=F64)
    assert any(name.startswith("bn") for name in model.net.layers)
    assert any(name.startswith("dropout") for name in model.net.layers)
    _randomize_biases(model, backend, rng)
    errors = gradcheck.check_model(model, backend.asarray(rng.standard_normal((4, 6))), np.array([0, 2, 1, 2]))
    assert set(errors) == set(model.params)
    # BatchNorm cancels any constant shift, so the biases of fc1 and fc2 (each followed by a BatchNorm)
    # have a true gradient of 0: both sides are rounding noise and only an absolute check makes sense.
    for name in ("fc1.b", "fc2.b"):
        assert float(abs(model.grads[name]).max()) < 1e-12
        errors.pop(name)
    assert max(errors.values()) < TOL, errors


def test_mlp_with_dropout(backend, rng):
    model = MLP(input_size=6, hidden_size_list=(5, 4), output_size=3, use_dropout=True, dropout_ratio=0.3,
                seed=2, dtype=F64)
    _randomize_biases(model, backend, rng)
    errors = gradcheck.check_model(model, backend.asarray(rng.standard_normal((4, 6))), np.array([0, 2, 1, 2]))
    assert set(errors) == set(model.params)
    assert max(errors.values()) < TOL, errors


def test_mlp_regression_gradients(backend, rng):
    model = MLP(input_size=5, hidden_size_list=(4,), output_size=3, loss="mse", seed=1, dtype=F64)
    _randomize_biases(model, backend, rng)
    errors = gradcheck.check_model(model, backend.asarray(rng.standard_normal((4, 5))),
                                   rng.standard_normal((4, 3)))
    assert set(errors) == set(model.params)
    assert max(errors.values()) < TOL, errors


def test_mlp_sigmoid_gradients(backend, rng):
    model = MLP(input_size=4, hidden_size_list=(3,), output_size=2, activation="sigmoid",
                weight_init_std="sigmoid", seed=1, dtype=F64)
    _randomize_biases(model, backend, rng)
    errors = gradcheck.check_model(model, backend.asarray(rng.standard_normal((3, 4))), np.array([0, 1, 1]))
    assert max(errors.values()) < TOL, errors


def test_simple_convnet_gradients(backend, rng):
    model = SimpleConvNet(input_dim=(1, 6, 6), filter_num=2, filter_size=3, hidden_size=4, output_size=3,
                          weight_init_std=0.5, dtype=F64)
    _randomize_biases(model, backend, rng)
    errors = gradcheck.check_model(model, backend.asarray(rng.standard_normal((2, 1, 6, 6))), np.array([0, 2]))
    assert max(errors.values()) < TOL, errors


def test_fcn_gradients(backend, rng):
    """Every layer is checked whole above; here 4 random entries of each of the FCN's parameters, through
    the skip connection and both upsampling stages, against the per-pixel loss."""
    model = FCN(input_dim=(1, 8, 8), num_classes=3, widths=(2, 2, 2, 2), seed=4, dtype=F64)
    _randomize_biases(model, backend, rng)
    t = rng.integers(0, 3, size=(2, 8, 8))
    probes = gradcheck.sample_model(model, backend.asarray(rng.standard_normal((2, 1, 8, 8))), t, rng, per_param=4)
    assert set(probes) == set(model.params) and {"up2.W", "fuse.body.up4.W", "fuse.shortcut.W"} <= set(probes)
    for name, (analytic, numeric) in probes.items():
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9, err_msg=name)
    both = [np.concatenate(side) for side in zip(*probes.values())]
    assert gradcheck.relative_error(*both) < TOL


def test_dcgan_networks_gradients(backend, rng):
    G = Generator(z_dim=3, widths=(2, 2), seed=1, dtype=F64)
    errors = gradcheck.check_layer(G.net, backend.asarray(rng.standard_normal((3, 3, 1, 1))), train=True)
    assert set(errors) == {"x", *G.net.params}
    # a bias followed by BatchNorm has a true gradient of 0 (see the MLP test): absolute check only
    for name in ("deconv1.b", "deconv2.b"):
        assert float(abs(G.net.grads[name]).max()) < 1e-12, name
        errors.pop(name)
    assert max(errors.values()) < TOL, errors
    # the discriminator's 28x28 input has too many entries to probe one by one on the emulated device:
    # 3 random entries of every parameter, and its input gradient along one random direction
    D = Discriminator(widths=(2, 3), seed=2, dtype=F64)
    x, t = backend.asarray(rng.standard_normal((2, 1, 28, 28))), rng.random((2, 1))
    probes = gradcheck.sample_model(D, x, t, rng, per_param=3)
    assert set(probes) == set(D.params)
    for name, (analytic, numeric) in probes.items():
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9, err_msg=name)
    D.loss(x, t)
    dx = backend.asnumpy(D.net.backward(D.loss_layer.backward()))
    v, eps = rng.standard_normal(x.shape), 1e-6
    plus, minus = (float(D.loss(x + s * eps * backend.asarray(v), t)) for s in (1, -1))
    assert abs((plus - minus) / (2 * eps) - float((dx * v).sum())) < 1e-7 * float(np.abs(dx * v).sum())


@pytest.mark.slow
def test_deep_convnet_loss_gradients_sampled(backend, rng):
    """All 123,552 entries would take minutes; probe 2 random entries of every parameter array."""
    model = DeepConvNet(seed=3, dtype=F64)
    _randomize_biases(model, backend, rng)
    x = backend.asarray(rng.standard_normal((2, 1, 28, 28)))
    probes = gradcheck.sample_model(model, x, np.array([3, 7]), rng, per_param=2)
    assert set(probes) == set(model.params) and len(probes) == 16
    for name, (analytic, numeric) in probes.items():
        # Many probed entries are ~0 (dropped units, dead ReLUs): an absolute floor well above the
        # ~1e-10 noise of a float64 central difference, and a tight relative bound elsewhere.
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8, err_msg=name)
    both = [np.concatenate(side) for side in zip(*probes.values())]
    assert gradcheck.relative_error(*both) < TOL

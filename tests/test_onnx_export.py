"""ONNX export: every layer and every model in xpnet.models, checked by onnx and run in onnxruntime.

onnxruntime is an independent engine, so agreement with ``model.predict`` checks the exported graph
(padding, pooling divisor, LRN's alpha and window, BatchNorm's inference form) and xpnet's arithmetic.
Skipped cleanly when onnx or onnxruntime is missing (``pip install "xpnet[onnx]"``), except in CI.
"""

import numpy as np
import pytest
from onnx_helpers import require
from tolerance import assert_close

from xpnet import layers as L
from xpnet import models
from xpnet.models.base import Model

onnx = require("onnx")
ort = require("onnxruntime")

def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def export_checked(model, path, **kw):
    proto = model.to_onnx(path, **kw)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)  # shapes inferred through every node
    return proto


def wrap(*layers, input_dim):
    """A Model around a Sequential of ``layers`` taking (N, *input_dim)."""
    return Model(L.Sequential(*layers), L.SoftmaxCrossEntropy(), {}, input_shape=input_dim)


def randomize_batchnorm(model, rng):
    """Non-trivial gamma, beta and running statistics, so BatchNorm's inference form is really checked."""
    for name, v in {**model.params, **model.buffers}.items():
        shape = v.shape
        kind = "buffers" if name in model.buffers else "params"
        if name.endswith(("gamma", "running_var")):
            model.net.set_array(name, rng.uniform(0.5, 1.5, shape).astype(v.dtype), kind)
        elif name.endswith(("beta", "running_mean")):
            model.net.set_array(name, rng.uniform(-0.5, 0.5, shape).astype(v.dtype), kind)


# -- one layer at a time: small sums, so a tight bound ---------------------------------------------------
def _conv(rng, **kw):
    return L.Conv2D(3, 4, rng=rng, **kw)


LAYER_CASES = {
    "conv_stride_pad": (lambda rng: [_conv(rng, kernel_size=3, stride=2, pad=1)], (3, 9, 8), 27),
    "conv_rect_pad": (lambda rng: [_conv(rng, kernel_size=(3, 2), stride=(1, 2), pad=(2, 1))], (3, 7, 7), 18),
    "maxpool_pad": (lambda rng: [L.MaxPool2D(3, 2, 1)], (2, 7, 6), 1),
    "maxpool_rect": (lambda rng: [L.MaxPool2D((2, 3), (1, 2))], (2, 5, 7), 1),
    # with pad the divisor tells xpnet's count_include_pad semantics from ONNX's default
    "avgpool_pad": (lambda rng: [L.AvgPool2D(3, 2, 1)], (2, 7, 6), 9),
    "avgpool_rect_pad": (lambda rng: [L.AvgPool2D((2, 4), 1, (1, 2))], (2, 5, 6), 8),
    "batchnorm_4d": (lambda rng: [L.BatchNorm(3)], (3, 4, 5), 4),
    "batchnorm_2d": (lambda rng: [L.BatchNorm(6)], (6,), 4),
    # a large alpha makes LRN's alpha convention and window visible far above rounding
    "lrn_odd": (lambda rng: [L.LocalResponseNormalization(3, alpha=0.5, beta=0.75, k=1.0)], (6, 3, 3), 8),
    "lrn_even": (lambda rng: [L.LocalResponseNormalization(4, alpha=0.5, beta=0.75, k=1.0)], (6, 3, 3), 8),
    "lrn_alexnet": (lambda rng: [L.LocalResponseNormalization()], (7, 3, 3), 8),
    "conv_transpose": (lambda rng: [L.Conv2DTranspose(3, 4, 4, 2, 1, rng=rng)], (3, 4, 5), 48),
    "conv_transpose_output_pad": (lambda rng: [L.Conv2DTranspose(3, 2, (3, 2), (3, 2), (1, 0), (2, 1), rng=rng)],
                                  (3, 3, 4), 18),
    "upsample_bilinear": (lambda rng: [L.Upsample2D((2, 3))], (2, 4, 3), 4),
    "upsample_nearest": (lambda rng: [L.Upsample2D((3, 2), mode="nearest")], (2, 3, 4), 1),
    "leaky_relu": (lambda rng: [L.LeakyReLU(0.2)], (3, 4), 1),
    "affine_flattens": (lambda rng: [L.Affine(24, 5, rng=rng)], (2, 3, 4), 24),
    "flatten": (lambda rng: [L.Flatten()], (2, 3, 4), 1),
    "relu_sigmoid_tanh": (lambda rng: [L.ReLU(), L.Sigmoid(), L.Tanh()], (5,), 4),
    "dropout_is_identity": (lambda rng: [L.Dropout(0.5, seed=1)], (3, 4), 1),
    "global_avgpool": (lambda rng: [L.GlobalAvgPool2D()], (3, 4, 5), 20),
    "residual_identity": (lambda rng: [L.Residual(L.Sequential(L.Conv2D(3, 3, 3, 1, 1, rng=rng), L.ReLU()))],
                          (3, 5, 5), 28),
    "residual_projection": (lambda rng: [L.basic_block(3, 4, stride=2, rng=rng)], (3, 6, 6), 40),
    "concat_nested": (lambda rng: [L.inception_block(3, 2, 2, 3, 1, 2, 2, rng=rng)], (3, 5, 5), 60),
    "sequential_nested": (lambda rng: [L.Sequential(L.Sequential(("c", L.Conv2D(3, 2, 1, rng=rng))), L.ReLU())],
                          (3, 4, 4), 3),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_each_layer_matches_onnxruntime(case, tmp_path, rng):
    """terms: the longest sum one output needs (a window, a dot product, the LRN and BatchNorm formulas)."""
    build, input_dim, terms = LAYER_CASES[case]
    model = wrap(*build(rng), input_dim=input_dim)
    randomize_batchnorm(model, rng)
    x = rng.normal(0.0, 1.5, (5, *input_dim)).astype(np.float32)
    export_checked(model, tmp_path / "m.onnx")
    want = model.predict(x)
    got = run_onnx(tmp_path / "m.onnx", x)
    assert got.shape == want.shape and got.dtype == np.float32
    # one term's magnitude: an input times a weight (LRN and BatchNorm only shrink or rescale by their params)
    scale = float(np.abs(x).max()) * max([1.0, *(float(np.abs(p).max()) for p in model.params.values())])
    assert_close(got, want, terms=terms, scale=scale, dtype=np.float32, err_msg=case)


# -- every model in xpnet.models, small where the model allows -------------------------------------------
MODEL_CASES = {
    "mlp": lambda: models.MLP(input_size=20, hidden_size_list=[16, 12], use_batchnorm=True, use_dropout=True),
    "mlp_sigmoid": lambda: models.MLP(input_size=20, hidden_size_list=[16], activation="sigmoid",
                                      weight_init_std="xavier"),
    "simple_convnet": lambda: models.SimpleConvNet(input_dim=(1, 12, 12), filter_num=4, hidden_size=10,
                                                   weight_init_std="he"),
    "deep_convnet": lambda: models.DeepConvNet(),
    "alexnet": lambda: models.AlexNet(input_dim=(3, 67, 67), hidden_size=32, output_size=10),
    "vgg16": lambda: models.VGG16(width=0.125, hidden_size=32),
    "vgg16_bn": lambda: models.VGG16(width=0.125, hidden_size=32, batchnorm=True),
    "resnet": lambda: models.ResNet(),
    "fcn": lambda: models.FCN(input_dim=(1, 16, 16), num_classes=3, widths=(4, 4, 8, 8)),
    "dcgan_generator": lambda: models.Generator(z_dim=8, widths=(8, 4)),
    "dcgan_discriminator": lambda: models.Discriminator(widths=(4, 8)),
    "inception": lambda: models.Inception(),
}


def test_every_registered_model_has_a_case():
    assert {MODEL_CASES[k]().arch for k in MODEL_CASES} == set(models.REGISTRY)


def fan_in_sum(model):
    """Terms summed along the network: each weight's fan-in (Conv2D C*KH*KW, Affine in_features; for
    Conv2DTranspose's (C, FN, KH, KW) this counts FN*KH*KW, more than the C*KH*KW/stride^2 it sums)."""
    return sum(int(np.prod(w.shape[1:])) if w.ndim == 4 else int(w.shape[0])
               for k, w in model.params.items() if k.endswith(".W"))


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_every_model_matches_onnxruntime(case, tmp_path, rng):
    model = MODEL_CASES[case]()
    randomize_batchnorm(model, rng)
    export_checked(model, tmp_path / "m.onnx")
    dims = model.input_shape
    for n in (1, 6):  # the batch axis is dynamic
        x = rng.random((n, *dims), dtype=np.float32)
        want, got = model.predict(x), run_onnx(tmp_path / "m.onnx", x)
        # Each layer's sums may be off by K * eps of their size in either engine; He/Xavier initialisation
        # keeps a layer's gain near 1, so that error reaches the logits at about its size relative to them.
        assert_close(got, want, terms=fan_in_sum(model), scale=float(np.abs(want).max()), dtype=np.float32,
                     err_msg=case)
        assert (got.argmax(axis=1) == want.argmax(axis=1)).all()

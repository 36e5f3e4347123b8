"""Branching blocks (Residual, Concat, GlobalAvgPool2D), nested containers and the ResNet, Inception and
VGG16 models, on every backend: float64 central-difference gradients, dtypes, names, state and files."""

import numpy as np
import pytest

import xpnet
from xpnet import gradcheck
from xpnet.errors import ShapeError
from xpnet.layers import (
    Affine,
    BatchNorm,
    Concat,
    Conv2D,
    Dropout,
    GlobalAvgPool2D,
    MaxPool2D,
    MeanSquaredError,
    ReLU,
    Residual,
    Sequential,
    basic_block,
    inception_block,
)
from xpnet.models import VGG16, Inception, Model, ResNet

TOL = 1e-7
F64 = "float64"


def _r():
    return np.random.default_rng(1)


def _residual_identity(dt):
    return Residual(Sequential(("conv1", Conv2D(2, 2, 3, 1, 1, rng=_r(), dtype=dt)), ("relu1", ReLU()),
                               ("conv2", Conv2D(2, 2, 3, 1, 1, rng=_r(), dtype=dt))))


def _concat_with_identity(dt):
    return Concat(Sequential(), Sequential(Conv2D(2, 3, 1, rng=_r(), dtype=dt), ReLU()), MaxPool2D(3, 1, 1))


# name -> (factory(dtype) -> layer, input shape)
BLOCKS = {
    "residual_identity": (_residual_identity, (2, 2, 4, 4)),
    "residual_identity_bn": (lambda dt: basic_block(2, 2, 1, rng=_r(), dtype=dt), (2, 2, 4, 4)),
    "residual_projection": (lambda dt: basic_block(2, 3, 2, batchnorm=False, rng=_r(), dtype=dt), (2, 2, 5, 5)),
    "residual_projection_bn": (lambda dt: basic_block(2, 3, 2, rng=_r(), dtype=dt), (2, 2, 5, 5)),
    "concat_identity_branch": (_concat_with_identity, (2, 2, 3, 4)),
    "inception": (lambda dt: inception_block(3, 2, 2, 3, 1, 2, 2, batchnorm=False, rng=_r(), dtype=dt),
                  (2, 3, 4, 4)),
    "inception_bn": (lambda dt: inception_block(3, 2, 2, 3, 1, 2, 2, rng=_r(), dtype=dt), (2, 3, 4, 4)),
    "global_avg_pool": (lambda dt: GlobalAvgPool2D(), (2, 3, 4, 5)),
}


def _before_batchnorm(layer):
    """Conv biases followed by a train-mode BatchNorm: their gradient is 0, so a relative error is noise."""
    leaves = list(layer.walk()) if hasattr(layer, "walk") else []
    return {f"{a}.b" for (a, conv), (_, nxt) in zip(leaves, leaves[1:])
            if isinstance(conv, Conv2D) and isinstance(nxt, BatchNorm)}


@pytest.mark.parametrize("case", list(BLOCKS))
def test_block_gradients(backend, case, rng):
    factory, shape = BLOCKS[case]
    layer = factory(F64)
    for name, p in layer.params.items():  # a zero beta makes BN-ReLU-conv-BN blind to the first gamma
        if name.endswith(".beta"):
            layer.set_array(name, backend.asarray(rng.standard_normal(p.shape) * 0.5))
    x = backend.asarray(rng.standard_normal(shape))
    errors = gradcheck.check_layer(layer, x, train=True)
    assert set(errors) == {"x", *layer.params}
    for name in _before_batchnorm(layer):
        assert float(abs(layer.grads[name]).max()) < 1e-10, name
        errors.pop(name)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("case", list(BLOCKS))
def test_block_keeps_float32_and_leaves_dout_alone(backend, case, rng):
    factory, shape = BLOCKS[case]
    layer = factory("float32")
    x = backend.asarray(rng.standard_normal(shape), dtype=np.float32)
    y = layer.forward(x, train=True)
    assert y.dtype == np.float32 and backend.owns(y)
    dout = backend.asarray(rng.standard_normal(y.shape), dtype=np.float32)
    before = backend.asnumpy(dout).copy()
    dx = layer.backward(dout)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())
    np.testing.assert_array_equal(backend.asnumpy(dout), before)
    assert dx is not dout


def test_block_shapes(backend, rng):
    x = backend.asarray(rng.standard_normal((2, 4, 7, 7)), dtype=np.float32)
    assert basic_block(4, 8, 2, rng=_r()).forward(x).shape == (2, 8, 4, 4)
    assert inception_block(4, 3, 2, 5, 1, 2, 6, rng=_r()).forward(x).shape == (2, 3 + 5 + 2 + 6, 7, 7)
    assert GlobalAvgPool2D().forward(x).shape == (2, 4)


def test_shape_mismatches_name_the_block(backend, rng):
    x = backend.asarray(rng.standard_normal((2, 2, 4, 4)), dtype=np.float32)
    net = Sequential(("block1", Residual(Sequential(("conv1", Conv2D(2, 3, 3, 1, 1, rng=_r()))))))
    with pytest.raises(ShapeError, match=r"Residual 'block1'.*\(2, 3, 4, 4\).*\(2, 2, 4, 4\)"):
        net.forward(x)
    cat = Sequential(("mix", Concat(Conv2D(2, 1, 1, rng=_r()), Conv2D(2, 1, 3, rng=_r()))))
    with pytest.raises(ShapeError, match=r"Concat 'mix'.*branch1 \(2, 1, 4, 4\).*branch2 \(2, 1, 2, 2\)"):
        cat.forward(x)
    with pytest.raises(ShapeError, match=r"GlobalAvgPool2D.*4-D"):
        GlobalAvgPool2D().forward(x[0])


def test_nested_names_set_array_to_and_astype(backend):
    net = Sequential(("stem", Conv2D(1, 2, 3, rng=_r())), ("block1", basic_block(2, 3, 2, rng=_r())))
    names = list(net.params)
    assert names[:2] == ["stem.W", "stem.b"]
    assert "block1.body.conv1.W" in names and "block1.shortcut.conv.W" in names
    assert "block1.body.bn2.running_var" in net.buffers
    assert net["block1"]["body"]["conv2"].name == "block1.body.conv2"
    new = backend.xp.ones((3, 2, 3, 3), dtype=np.float32)
    net.set_array("block1.body.conv1.W", new)
    assert net["block1"]["body"]["conv1"].params["W"] is new
    net.astype("float64")
    assert all(a.dtype == np.float64 for a in {**net.params, **net.buffers}.values())
    assert net.to("numpy") is net
    with pytest.raises(ValueError, match="unique"):
        Concat(("a", ReLU()), ("a", ReLU()))


def test_dropout_inside_a_block_keeps_its_rng_state(backend, rng):
    body = Sequential(("fc", Affine(4, 4, rng=_r())), ("drop", Dropout(0.5, seed=7)))
    model = Model(Sequential(("block1", Residual(body)), ("drop", Dropout(0.5, seed=8))), MeanSquaredError(), {})
    x = backend.asarray(rng.standard_normal((3, 4)), dtype=np.float32)
    model.predict(x, train=True)  # advance both generators
    state = model.get_rng_state()
    assert set(state) == {"block1.body.drop", "drop"}
    first = backend.asnumpy(model.predict(x, train=True))
    model.set_rng_state(state)
    np.testing.assert_array_equal(backend.asnumpy(model.predict(x, train=True)), first)


# -- models ---------------------------------------------------------------------------------------

TINY = {
    "resnet": lambda **kw: ResNet(input_dim=(1, 8, 8), output_size=3, widths=(2, 3, 4), blocks=(2, 1, 1), **kw),
    "inception": lambda **kw: Inception(input_dim=(1, 8, 8), output_size=3, stem=3, stage1=[(2, 2, 2, 1, 2, 1)],
                                        stage2=[(1, 1, 2, 1, 1, 1), (2, 1, 1, 1, 1, 1)], dropout_ratio=0.3, **kw),
    "vgg16": lambda **kw: VGG16(input_dim=(1, 8, 8), output_size=3, width=1 / 64, hidden_size=5, batchnorm=True,
                                dropout_ratio=0.3, **kw),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
@pytest.mark.parametrize("arch", list(TINY))
def test_model_loss_gradients_sampled(backend, arch, train, rng):
    """Probe 3 random entries of every parameter array of a tiny float64 model; in inference mode after
    two training passes, so BatchNorm's running statistics differ from the last batch's."""
    model = TINY[arch](seed=3, dtype=F64)
    for name, p in model.params.items():  # move ReLU inputs off the kink at zero-initialised biases
        if name.endswith((".b", ".beta")):
            model.net.set_array(name, backend.asarray(rng.standard_normal(p.shape) * 0.1))
    x = backend.asarray(rng.standard_normal((3, 1, 8, 8)))
    if not train:
        for _ in range(2):
            model.loss(backend.asarray(rng.standard_normal((3, 1, 8, 8)) * 2 + 1), np.array([1, 0, 2]), train=True)
    probes = gradcheck.sample_model(model, x, np.array([0, 2, 1]), rng, per_param=3, train=train)
    assert set(probes) == set(model.params)
    for name, (analytic, numeric) in probes.items():
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8, err_msg=name)
    both = [np.concatenate(side) for side in zip(*probes.values())]
    assert gradcheck.relative_error(*both) < TOL


@pytest.mark.parametrize("arch", list(TINY))
def test_model_save_load_round_trip(tmp_path, backend, arch, rng):
    model = TINY[arch](seed=4)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    model.gradient(x, np.array([0, 1, 2, 0]))  # non-default running statistics
    model.save(tmp_path / "m.npz")
    again = xpnet.load(tmp_path / "m.npz")
    assert type(again) is type(model) and again.config == model.config and again.arch == arch
    assert list(again.params) == list(model.params) and list(again.buffers) == list(model.buffers)
    assert np.array_equal(backend.asnumpy(model.predict(x)), backend.asnumpy(again.predict(x)))
    assert xpnet.models.build(arch, **model.config).num_params() == model.num_params()


@pytest.mark.parametrize("arch", list(TINY))
def test_model_names_are_unique_and_counted(backend, arch, rng):
    model = TINY[arch]()
    leaves = list(model.net.walk())
    assert len({name for name, _ in leaves}) == len(leaves)
    arrays = [p for _, leaf in leaves for p in leaf.params.values()]
    assert len(model.params) == len(arrays)
    assert len({id(p) for p in model.params.values()}) == len(arrays)
    assert model.num_params() == sum(int(p.size) for p in arrays)
    out = model.predict(rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    assert out.shape == (2, 3) and out.dtype == np.float32


def test_default_resnet_and_inception(backend, rng):
    resnet = ResNet()
    # stem 1*16*9+16 + BN 32; block1 2*(16*16*9+16) + 2*32; block2 16*32*9+32 + 32*32*9+32 + 16*32+32 + 3*64;
    # block3 32*64*9+64 + 64*64*9+64 + 32*64+64 + 3*128; fc 64*10+10
    assert resnet.num_params() == 192 + 4_704 + 14_624 + 57_920 + 650
    assert resnet.dtype == np.float32
    assert "block3.shortcut.conv.W" in resnet.params and "block1.shortcut.conv.W" not in resnet.params
    inception = Inception()
    assert inception.num_params() == 90_570
    assert inception.get_rng_state().keys() == {"dropout"}
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    for model in (resnet, inception):
        assert model.predict(x).shape == (2, 10)


def test_vgg16_layout_and_pools(backend, rng):
    vgg = VGG16(width=0.25, hidden_size=64)
    convs = [name for name, leaf in vgg.net.walk() if isinstance(leaf, Conv2D)]
    assert len(convs) == 13 and convs[0] == "conv1_1" and convs[-1] == "conv5_3"
    assert vgg.net["conv1_1"].FN == 16 and vgg.net["conv5_3"].FN == 128
    # 28 -> 14 -> 7 -> 3 -> 1: the fifth pool would give 0x0, so it is skipped
    assert [name for name, leaf in vgg.net.walk() if isinstance(leaf, MaxPool2D)] == [f"pool{i}" for i in range(1, 5)]
    assert vgg.net["fc6"].in_features == 128
    assert vgg.predict(rng.standard_normal((2, 1, 28, 28)).astype(np.float32)).shape == (2, 10)
    big = VGG16(input_dim=(3, 32, 32), width=0.125, hidden_size=16, batchnorm=True)
    assert sum(isinstance(leaf, MaxPool2D) for _, leaf in big.net.walk()) == 5
    assert "bn5_3.gamma" in big.params

"""xpnet.profile: per-layer rows and per-type sums on tiny models; AlexNet's layers and registry entry."""

import numpy as np
import pytest
from tolerance import assert_close

from xpnet.layers import (
    Affine,
    BatchNorm,
    Conv2D,
    Dropout,
    Flatten,
    LocalResponseNormalization,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
)
from xpnet.models import REGISTRY, AlexNet, DeepConvNet, build
from xpnet.profile import TYPES, layer_type, profile, summarize

TIME_KEYS = ("forward_ms", "forward_min_ms", "forward_max_ms", "backward_ms", "backward_min_ms", "backward_max_ms")


def tiny_net(backend):
    rng = np.random.default_rng(0)
    return Sequential(
        ("conv", Conv2D(2, 4, 3, pad=1, rng=rng, backend=backend)),
        ("relu", ReLU()),
        ("lrn", LocalResponseNormalization()),
        ("pool", MaxPool2D(2, 2)),
        ("fc", Affine(4 * 3 * 3, 5, rng=rng, backend=backend)),
        ("drop", Dropout(0.5, seed=1)),
    )


def assert_sane(row):
    for phase in ("forward", "backward"):
        low, mid, high = row[f"{phase}_min_ms"], row[f"{phase}_ms"], row[f"{phase}_max_ms"]
        assert 0.0 <= low <= mid <= high, row


def test_rows_of_a_sequential(backend, rng):
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    rows = profile(tiny_net(backend), x, repeats=3, warmup=1)
    assert [r["name"] for r in rows] == ["conv", "relu", "lrn", "pool", "fc", "drop"]
    assert [r["type"] for r in rows] == ["conv", "relu", "norm", "pool", "fc", "dropout"]
    assert rows[0]["output_shape"] == [3, 4, 6, 6] and rows[-1]["output_shape"] == [3, 5]
    assert rows[2]["layer"] == "LocalResponseNormalization"
    for row in rows:
        assert set(TIME_KEYS) <= set(row)
        assert_sane(row)


def test_model_rows_include_the_loss(backend, rng):
    model = DeepConvNet()
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    rows = profile(model, x, np.array([1, 7]), repeats=2, warmup=0)
    assert [r["name"] for r in rows] == [*model.net.layers, "loss"]
    assert rows[-1]["type"] == "other" and rows[-1]["output_shape"] == []
    assert all(r["backward_ms"] is not None for r in rows)
    assert set(model.grads) == set(model.params)  # backward really ran


def test_forward_only_has_no_backward_times(rng):
    rows = profile(tiny_net("numpy"), rng.standard_normal((1, 2, 6, 6)), backward=False, repeats=1, warmup=0)
    assert all(r["backward_ms"] is None and r["backward_max_ms"] is None for r in rows)
    by_type = summarize(rows)
    assert all(r["backward_share"] is None for r in by_type)
    assert_close(sum(r["forward_share"] for r in by_type), 1.0, terms=2 * len(rows))  # fractions of one sum


def test_summarize_groups_by_type_in_fixed_order(rng):
    rows = profile(tiny_net("numpy"), rng.standard_normal((2, 2, 6, 6)).astype(np.float32), repeats=2, warmup=1)
    by_type = summarize(rows)
    assert [r["type"] for r in by_type] == ["conv", "fc", "pool", "norm", "relu", "dropout"]
    assert all(r["layers"] == 1 for r in by_type)
    assert_close(sum(r["forward_share"] for r in by_type), 1.0, terms=2 * len(rows))
    assert_close(sum(r["backward_share"] for r in by_type), 1.0, terms=2 * len(rows))
    conv = next(r for r in by_type if r["type"] == "conv")
    assert conv["forward_ms"] == rows[0]["forward_ms"]  # the one conv layer's own time


def test_layer_type_buckets():
    assert TYPES == ("conv", "fc", "pool", "norm", "relu", "dropout", "other")
    assert layer_type(BatchNorm(3)) == "norm"
    assert layer_type(Sigmoid()) == "other" and layer_type(Flatten()) == "other"

    class MyConv(Conv2D):
        pass

    assert layer_type(MyConv(1, 1, 1)) == "conv"


def test_rejects_bad_repeats():
    with pytest.raises(ValueError):
        profile(tiny_net("numpy"), np.zeros((1, 2, 6, 6), np.float32), repeats=0)
    with pytest.raises(TypeError):
        profile(ReLU(), np.zeros((1, 2), np.float32))


def test_alexnet_layers_and_shapes_at_the_smallest_input(backend, rng):
    model = AlexNet(input_dim=(3, 67, 67))
    rows = profile(model, rng.random((1, 3, 67, 67), dtype=np.float32), backward=False, repeats=1, warmup=0)
    shapes = {r["name"]: r["output_shape"] for r in rows}
    assert shapes["conv1"] == [1, 96, 15, 15] and shapes["pool1"] == [1, 96, 7, 7]
    assert shapes["conv2"] == [1, 256, 7, 7] and shapes["pool2"] == [1, 256, 3, 3]
    assert shapes["pool5"] == [1, 256, 1, 1] and shapes["fc8"] == [1, 1000]
    counts = {t: sum(r["type"] == t for r in rows) for t in TYPES}
    assert counts == {"conv": 5, "fc": 3, "pool": 3, "norm": 2, "relu": 7, "dropout": 2, "other": 0}


def test_alexnet_parameter_count_and_registry():
    convs = 96 * 3 * 121 + 256 * 96 * 25 + 384 * 256 * 9 + 384 * 384 * 9 + 256 * 384 * 9 + 96 + 256 + 384 + 384 + 256
    fcs = (256 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert AlexNet(input_dim=(3, 67, 67)).num_params() == convs + fcs
    assert REGISTRY["alexnet"] is AlexNet
    small = build("alexnet", input_dim=(3, 67, 67), output_size=7, hidden_size=16)
    assert small.config["output_size"] == 7 and small.predict(np.zeros((2, 3, 67, 67), np.float32)).shape == (2, 7)
    with pytest.raises(Exception, match="too small"):
        AlexNet(input_dim=(3, 66, 66))

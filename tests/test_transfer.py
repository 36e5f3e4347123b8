"""Transfer learning and freezing: copy by name with a report; frozen parameters never move in training."""

import numpy as np
import pytest
from test_training import synthetic_digits

from xpnet import optim
from xpnet.models import MLP, DeepConvNet, SimpleConvNet
from xpnet.training import Trainer
from xpnet.transfer import TransferReport, transfer_weights


def small_convnet(output_size=4, seed=0, **kw):
    return SimpleConvNet(input_dim=(1, 12, 12), filter_num=4, hidden_size=8, output_size=output_size, seed=seed,
                         **kw)


def host(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_transfer_copies_by_name_and_reports_shape_mismatch(backend):
    source, target = small_convnet(output_size=4, seed=1), small_convnet(output_size=3, seed=2)
    before = host(target)
    report = transfer_weights(target, source)
    assert isinstance(report, TransferReport)
    assert report.copied == ["conv1.W", "conv1.b", "fc1.W", "fc1.b"]
    assert report.shape_mismatch == [("fc2.W", (8, 4), (8, 3)), ("fc2.b", (4,), (3,))]
    assert report.missing == [] and report.unused == [] and report.excluded == []
    after, src = host(target), host(source)
    for k in report.copied:
        assert np.array_equal(after[k], src[k]), k
    for k in ("fc2.W", "fc2.b"):
        assert np.array_equal(after[k], before[k]), k
    text = str(report)
    assert "copied 4 of the model's 6 arrays" in text and "fc2.W: source (8, 4) vs model (8, 3)" in text


def test_transfer_reports_missing_and_unused_names(backend):
    target = small_convnet()
    state = host(small_convnet(seed=3))
    state.pop("fc1.b")
    state["extra.W"] = np.ones((2, 2), np.float32)
    report = transfer_weights(target, state)
    assert report.missing == ["fc1.b"]
    assert report.unused == ["extra.W"]
    assert len(report.copied) == 5
    assert "missing" in str(report) and "extra.W" in str(report)


def test_include_and_exclude_patterns_match_names_and_layers(backend):
    source, target = small_convnet(seed=1), small_convnet(seed=2)
    report = transfer_weights(target, source, include="conv*")
    assert report.copied == ["conv1.W", "conv1.b"]
    assert report.excluded == ["fc1.W", "fc1.b", "fc2.W", "fc2.b"]
    report = transfer_weights(small_convnet(seed=2), source, include=["conv1", "fc*"], exclude=["fc2", "*.b"])
    assert report.copied == ["conv1.W", "fc1.W"]
    with pytest.raises(ValueError, match=r"pattern 'conv9\*' matches no name.*layers: conv1, fc1, fc2"):
        transfer_weights(target, source, include="conv9*")
    with pytest.raises(TypeError, match="include must be a pattern or a list of patterns, got int"):
        transfer_weights(target, source, include=3)


def test_nothing_transferable_is_an_error(backend):
    a = MLP(input_size=4, hidden_size_list=[3], output_size=2)
    b = MLP(input_size=5, hidden_size_list=[6], output_size=3)
    with pytest.raises(ValueError, match="nothing was copied into MLP"):
        transfer_weights(b, a)
    with pytest.raises(TypeError, match="source must be a Model, a path to a saved model or a state dict, got int"):
        transfer_weights(b, 3)


def test_transfer_never_aliases_and_casts_to_the_models_dtype(backend):
    source = small_convnet(seed=1)
    target = small_convnet(seed=2, dtype="float64")
    state = {k: np.asarray(v, dtype=np.float32) for k, v in host(source).items()}
    transfer_weights(target, state)
    for k, v in target.params.items():
        assert v.dtype == np.float64 and backend.owns(v), k
    target.params["conv1.W"][...] = 7.0  # writing into the target changes neither the source model nor the dict
    assert not np.any(state["conv1.W"] == 7.0)
    transfer_weights(source, target)
    source.params["fc1.W"][...] = 5.0
    assert not np.any(backend.asnumpy(target.params["fc1.W"]) == 5.0)
    assert source.params["conv1.W"].dtype == np.float32


def test_transfer_from_a_state_dict_of_device_arrays(backend):
    source, target = small_convnet(seed=1), small_convnet(seed=2)
    report = transfer_weights(target, dict(source.params))
    assert len(report.copied) == 6
    for k in report.copied:
        assert target.params[k] is not source.params[k]
        assert np.array_equal(backend.asnumpy(target.params[k]), backend.asnumpy(source.params[k]))


def test_transfer_from_a_saved_file_and_a_checkpoint(tmp_path, backend):
    source = small_convnet(output_size=4, seed=1)
    source.save(tmp_path / "src.npz")
    target = small_convnet(output_size=3, seed=2)
    report = transfer_weights(target, str(tmp_path / "src.npz"), exclude="fc*")
    assert report.copied == ["conv1.W", "conv1.b"]
    assert np.array_equal(host(target)["conv1.W"], host(source)["conv1.W"])

    train = synthetic_digits(40, size=12)
    Trainer(source, optim.SGD(lr=0.01), train, train, epochs=1, batch_size=20, out_dir=str(tmp_path / "run"),
            progress=None).fit()
    report = transfer_weights(target, tmp_path / "run" / "checkpoint.npz")
    assert report.copied == ["conv1.W", "conv1.b", "fc1.W", "fc1.b"]
    assert np.array_equal(host(target)["fc1.W"], host(source)["fc1.W"])


def test_transfer_from_a_missing_file_names_it(tmp_path):
    from xpnet.errors import FileFormatError

    with pytest.raises(FileFormatError, match="nope.npz: no such file"):
        transfer_weights(small_convnet(), tmp_path / "nope.npz")


def test_transfer_copies_batchnorm_buffers(backend):
    kw = dict(input_size=6, hidden_size_list=[5], output_size=3, use_batchnorm=True)
    source, target = MLP(seed=1, **kw), MLP(seed=2, **kw)
    names = list(source.buffers)
    assert names, "MLP with batchnorm has running statistics"
    for k in names:
        source.net.set_array(k, source.buffers[k] + 0.5, "buffers")
    report = transfer_weights(target, source)
    for k in names:
        assert k in report.copied
        assert np.array_equal(backend.asnumpy(target.buffers[k]), backend.asnumpy(source.buffers[k]))


# -- freezing --------------------------------------------------------------------------------------
def test_freeze_patterns_and_trainable_params():
    model = DeepConvNet(output_size=4)
    assert model.frozen == set() and list(model.trainable_params) == list(model.params)
    model.freeze("conv*")
    assert model.frozen == {f"conv{i}.{p}" for i in range(1, 7) for p in "Wb"}
    assert list(model.trainable_params) == ["fc1.W", "fc1.b", "fc2.W", "fc2.b"]
    model.unfreeze("conv6")
    assert "conv6.W" not in model.frozen and "conv5.W" in model.frozen
    model.freeze("*.b")
    assert list(model.trainable_params) == ["conv6.W", "fc1.W", "fc2.W"]
    model.freeze()
    assert not model.trainable_params
    model.unfreeze()
    assert model.frozen == set()
    with pytest.raises(ValueError, match=r"pattern 'conv7' matches no parameter; layers with parameters: conv1, "
                                         r"conv2, .*fc2"):
        model.freeze("conv7")
    with pytest.raises(ValueError, match="unfreeze: pattern 'relu1' matches no parameter"):
        model.unfreeze("relu1")


def test_frozen_parameters_stay_bit_identical_while_training(backend):
    model = small_convnet(seed=3)
    model.freeze("conv1", "fc2.b")
    before = host(model)
    train = synthetic_digits(60, size=12)
    Trainer(model, optim.Adam(lr=0.01, weight_decay=0.01), train, train, epochs=2, batch_size=20,
            progress=None).fit()
    after = host(model)
    for k in before:
        if k in model.frozen:
            assert np.array_equal(before[k], after[k]), k
        else:
            assert not np.array_equal(before[k], after[k]), k


def test_frozen_names_survive_checkpoint_and_resume(tmp_path):
    train = synthetic_digits(40, size=12)

    def trainer(model, epochs):
        return Trainer(model, optim.Momentum(lr=0.01), train, train, epochs=epochs, batch_size=20,
                       out_dir=str(tmp_path), progress=None)

    model = small_convnet(seed=3).freeze("fc1")
    trainer(model, 1).fit()
    resumed = trainer(small_convnet(seed=3), 2).resume()
    assert resumed.model.frozen == {"fc1.W", "fc1.b"}
    fc1 = host(resumed.model)["fc1.W"]
    resumed.fit()
    assert np.array_equal(host(resumed.model)["fc1.W"], fc1)


def test_optimizer_step_with_trainable_params_leaves_frozen_ones(backend):
    model = small_convnet(seed=4).freeze("fc*")
    x, t = synthetic_digits(10, size=12)
    before = host(model)
    opt = optim.SGD(lr=0.1)
    for _ in range(3):
        model.gradient(x, t)
        opt.step(model.trainable_params, model.grads)
    after = host(model)
    assert all(np.array_equal(before[k], after[k]) for k in model.frozen)
    assert not np.array_equal(before["conv1.W"], after["conv1.W"])
    assert set(opt.state) <= set(model.trainable_params)


def test_frozen_parameters_stay_put_under_mixed_precision():
    from xpnet.training import LossScaler, MixedPrecision

    model = small_convnet(seed=5).freeze("fc1")
    precision = MixedPrecision(model.params, LossScaler(interval=2))
    model.astype("float16")
    before = host(model)
    train = synthetic_digits(40, size=12)
    Trainer(model, optim.Adam(lr=0.01), train, train, epochs=1, batch_size=20, progress=None,
            precision=precision).fit()
    after = host(model)
    assert np.array_equal(before["fc1.W"], after["fc1.W"]) and np.array_equal(before["fc1.b"], after["fc1.b"])
    assert not np.array_equal(before["conv1.W"], after["conv1.W"])

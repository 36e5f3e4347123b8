"""Mixed-precision training: the loss scaler's schedule, skipped overflow steps, and learning."""

import pathlib
import shutil

import numpy as np
import pytest
from tolerance import assert_close

from xpnet.errors import FileFormatError
from xpnet.models import MLP
from xpnet.optim import SGD, Adam
from xpnet.training import LossScaler, MixedPrecision, Trainer


def test_scaler_grows_after_interval_and_backs_off_on_overflow():
    s = LossScaler(interval=3)
    assert s.scale == 2.0**16
    assert all(s.update(True) for _ in range(2)) and s.scale == 2.0**16
    assert s.update(True) and s.scale == 2.0**17  # x2 after 3 overflow-free steps
    assert not s.update(False) and s.scale == 2.0**16 and s.good_steps == 0 and s.skipped == 1  # x0.5, skip
    s.update(True), s.update(True)
    assert s.scale == 2.0**16  # the count restarted after the overflow
    assert LossScaler().interval == 2000


def _mixed(backend, lr=0.1):
    """A float16 MLP, its mixed-precision policy (masters from the float32 model) and an SGD."""
    model = MLP(input_size=4, hidden_size_list=[8], output_size=3, seed=0)
    precision = MixedPrecision(model.params, LossScaler(interval=2))
    return model.astype("float16"), precision, SGD(lr=lr)


def test_masters_are_float32_copies_and_the_model_is_left_to_its_caller(backend):
    model = MLP(input_size=4, hidden_size_list=[8], output_size=3, seed=0)
    precision = MixedPrecision(model.params)
    assert model.dtype == np.float32  # the policy casts nothing: the caller does
    for k, p in model.params.items():
        m = precision.master[k]
        assert m.dtype == np.float32 and backend.owns(m) and m is not p
        np.testing.assert_array_equal(backend.asnumpy(m), backend.asnumpy(p))


def test_non_finite_gradient_is_skipped_and_never_reaches_the_weights(backend, rng):
    model, precision, opt = _mixed(backend)
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    before = {k: backend.asnumpy(p).copy() for k, p in model.params.items()}
    masters = {k: backend.asnumpy(m).copy() for k, m in precision.master.items()}
    model.loss(x, t)
    grads = model.backward(precision.loss_scale)
    first = next(iter(grads))
    grads[first][0] = np.inf  # one overflowing element anywhere skips the whole update
    assert precision.step(opt, model.params, grads) is False
    assert precision.loss_scale == 2.0**15 and opt.t == 0
    for k, p in model.params.items():
        np.testing.assert_array_equal(backend.asnumpy(p), before[k])
        np.testing.assert_array_equal(backend.asnumpy(precision.master[k]), masters[k])
    model.loss(x, t)
    assert precision.step(opt, model.params, model.backward(precision.loss_scale)) is True
    assert all(np.isfinite(backend.asnumpy(p)).all() for p in model.params.values())


def test_update_equals_float32_sgd_on_unscaled_gradients(backend, rng):
    """The masters move by lr * (scaled float16 gradient / scale), within float16 gradient rounding."""
    model, precision, opt = _mixed(backend, lr=0.5)
    ref = {k: backend.asnumpy(m).astype(np.float64) for k, m in precision.master.items()}
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    model.loss(x, t)
    grads = model.backward(precision.loss_scale)
    expected = {k: ref[k] - 0.5 * backend.asnumpy(g).astype(np.float64) / 2.0**16 for k, g in grads.items()}
    precision.step(opt, model.params, grads)
    for k, m in precision.master.items():
        # float32: the unscaling product and one subtraction, relative to the master weights
        assert_close(backend.asnumpy(m), expected[k], terms=2, scale=np.abs(ref[k]) + np.abs(ref[k] - expected[k]))
        assert model.params[k].dtype == np.float16


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_mixed_training_learns_and_logs_the_loss_scale(backend, tmp_path):
    gen = np.random.default_rng(0)
    centers = gen.standard_normal((3, 10)) * 3
    t = gen.integers(0, 3, 600)
    x = (centers[t] + gen.standard_normal((600, 10))).astype(np.float32)
    model = MLP(input_size=10, hidden_size_list=[16], output_size=3, seed=0)
    precision = MixedPrecision(model.params, LossScaler(interval=5))
    trainer = Trainer(model.astype("float16"), Adam(lr=0.01), (x[:500], t[:500]), (x[500:], t[500:]), epochs=2,
                      batch_size=50, progress=False, out_dir=str(tmp_path), precision=precision)
    history = trainer.fit()
    assert history[-1]["test_acc"] > 0.9
    # grows x2 every 5 clean steps from 2^16 until a float16 gradient overflows, then halves: powers of 2
    assert [float(np.log2(h["loss_scale"])) % 1 for h in history] == [0.0, 0.0]
    assert history[-1]["loss_scale"] == precision.loss_scale
    assert history[-1]["skipped_steps"] == precision.scaler.skipped
    restored = Trainer(model, Adam(lr=0.01), (x[:500], t[:500]), (x[500:], t[500:]), epochs=2, batch_size=50,
                       progress=False, out_dir=str(tmp_path), precision=MixedPrecision(scaler=LossScaler(5))).resume()
    assert restored.precision.loss_scale == precision.loss_scale
    assert set(restored.precision.master) == set(precision.master)


def test_scaler_rejects_bad_settings():
    with pytest.raises(ValueError, match="backoff"):
        LossScaler(backoff=2.0)
    with pytest.raises(ValueError, match="interval"):
        LossScaler(interval=0)


DATA = pathlib.Path(__file__).parent / "data" / "mixed_v1"


def _blobs(n=300, seed=0):
    """Three Gaussian blobs in 10 features: (train, test) = the first 250, the last 50."""
    gen = np.random.default_rng(seed)
    centers = gen.standard_normal((3, 10)) * 3
    t = gen.integers(0, 3, n)
    x = (centers[t] + gen.standard_normal((n, 10))).astype(np.float32)
    return (x[:250], t[:250]), (x[250:], t[250:])


def _mixed_trainer(out_dir, epochs, backend=None, interval=3):
    """The run tests/data/mixed_v1 was written by: a float16 MLP, Adam, a loss scale growing every 3 steps."""
    model = MLP(input_size=10, hidden_size_list=[16], output_size=3, seed=0, backend=backend)
    precision = MixedPrecision(model.params, LossScaler(interval=interval))
    return Trainer(model.astype("float16"), Adam(lr=0.01), *_blobs(), epochs=epochs, batch_size=50, progress=False,
                   out_dir=str(out_dir), precision=precision)


def _state(trainer):
    be = trainer.model.backend
    return ({k: be.asnumpy(v).copy() for k, v in trainer.model.state_dict().items()},
            trainer.precision.master_weights(), trainer.precision.scaler.state_dict())


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_mixed_resume_is_bit_identical(tmp_path, backend):
    straight = _mixed_trainer(tmp_path / "a", 2, backend, interval=6)
    straight.fit()
    first = _mixed_trainer(tmp_path / "b", 1, backend, interval=6)
    first.fit()
    assert first.precision.scaler.good_steps > 0  # the epoch ends mid-interval: the count must be saved
    resumed = _mixed_trainer(tmp_path / "b", 2, backend, interval=6).resume()
    assert resumed.epoch == 1
    resumed.fit()
    model, masters, scaler = _state(straight)
    model2, masters2, scaler2 = _state(resumed)
    assert scaler == scaler2 and scaler["skipped"] > 0  # the run overflowed: the scaler's state matters
    for k in model:
        np.testing.assert_array_equal(model[k], model2[k])
    for k in masters:
        np.testing.assert_array_equal(masters[k], masters2[k])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_checkpoint_from_when_mixed_precision_wrapped_the_optimizer_resumes(tmp_path):
    """tests/data/mixed_v1: epoch 1 of 2 saved by xpnet when MixedPrecision posed as the optimizer (state
    ``"type": "MixedPrecision"``, ``"inner": "Adam"``, masters as ``<name>#master``), and that version's
    parameters, masters and loss scale after both epochs; resuming it here reproduces them exactly."""
    shutil.copy(DATA / "checkpoint.npz", tmp_path / "checkpoint.npz")
    resumed = _mixed_trainer(tmp_path, 2).resume()
    assert resumed.epoch == 1 and resumed.optimizer.t > 0
    resumed.fit()
    want = np.load(DATA / "after2.npz")
    model, masters, scaler = _state(resumed)
    assert scaler["scale"] == float(want["loss_scale"]) and scaler["skipped"] == int(want["skipped"])
    for k, v in model.items():
        np.testing.assert_array_equal(v, want[k])
    for k, v in masters.items():
        np.testing.assert_array_equal(v, want[f"master/{k}"])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_resuming_with_the_other_precision_refuses_naming_both(tmp_path):
    _mixed_trainer(tmp_path, 1).fit()
    model = MLP(input_size=10, hidden_size_list=[16], output_size=3, seed=0)
    full = Trainer(model, Adam(lr=0.01), *_blobs(), epochs=2, batch_size=50, progress=False, out_dir=str(tmp_path))
    with pytest.raises(FileFormatError, match="holds MixedPrecision training state, not FullPrecision; resume with "
                                              "the precision it was trained with"):
        full.resume()
    full.fit()  # overwrites the run's checkpoint with a full-precision one
    with pytest.raises(FileFormatError, match="holds FullPrecision training state, not MixedPrecision"):
        _mixed_trainer(tmp_path, 2).resume()

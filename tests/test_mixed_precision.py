"""Mixed-precision training: the loss scaler's schedule, skipped overflow steps, and learning."""

import numpy as np
import pytest
from tolerance import assert_close

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
    model = MLP(input_size=4, hidden_size_list=[8], output_size=3, seed=0)
    return model, MixedPrecision(SGD(lr=lr), LossScaler(interval=2)).attach(model)


def test_attach_keeps_float32_masters_and_casts_the_model(backend):
    model, opt = _mixed(backend)
    assert model.dtype == np.float16
    assert all(m.dtype == np.float32 and backend.owns(m) for m in opt.master.values())


def test_non_finite_gradient_is_skipped_and_never_reaches_the_weights(backend, rng):
    model, opt = _mixed(backend)
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    before = {k: backend.asnumpy(p).copy() for k, p in model.params.items()}
    masters = {k: backend.asnumpy(m).copy() for k, m in opt.master.items()}
    model.loss(x, t)
    grads = model.backward(opt.loss_scale)
    first = next(iter(grads))
    grads[first][0] = np.inf  # one overflowing element anywhere skips the whole update
    assert opt.step(model.params, grads) is False
    assert opt.loss_scale == 2.0**15 and opt.t == 0
    for k, p in model.params.items():
        np.testing.assert_array_equal(backend.asnumpy(p), before[k])
        np.testing.assert_array_equal(backend.asnumpy(opt.master[k]), masters[k])
    model.loss(x, t)
    assert opt.step(model.params, model.backward(opt.loss_scale)) is True
    assert all(np.isfinite(backend.asnumpy(p)).all() for p in model.params.values())


def test_update_equals_float32_sgd_on_unscaled_gradients(backend, rng):
    """The masters move by lr * (scaled float16 gradient / scale), within float16 gradient rounding."""
    model, opt = _mixed(backend, lr=0.5)
    ref = {k: backend.asnumpy(m).astype(np.float64) for k, m in opt.master.items()}
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    model.loss(x, t)
    grads = model.backward(opt.loss_scale)
    expected = {k: ref[k] - 0.5 * backend.asnumpy(g).astype(np.float64) / 2.0**16 for k, g in grads.items()}
    opt.step(model.params, grads)
    for k, m in opt.master.items():
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
    opt = MixedPrecision(Adam(lr=0.01), LossScaler(interval=5)).attach(model)
    trainer = Trainer(model, opt, (x[:500], t[:500]), (x[500:], t[500:]), epochs=2, batch_size=50,
                      progress=False, out_dir=str(tmp_path))
    history = trainer.fit()
    assert history[-1]["test_acc"] > 0.9
    # grows x2 every 5 clean steps from 2^16 until a float16 gradient overflows, then halves: powers of 2
    assert [float(np.log2(h["loss_scale"])) % 1 for h in history] == [0.0, 0.0]
    assert history[-1]["loss_scale"] == opt.loss_scale and history[-1]["skipped_steps"] == opt.scaler.skipped
    restored = Trainer(model, MixedPrecision(Adam(lr=0.01), LossScaler(interval=5)), (x[:500], t[:500]),
                       (x[500:], t[500:]), epochs=2, batch_size=50, progress=False, out_dir=str(tmp_path)).resume()
    assert restored.optimizer.loss_scale == opt.loss_scale and set(restored.optimizer.master) == set(opt.master)
    exported = opt.copy_masters_to(model)
    assert exported.dtype == np.float32


def test_scaler_rejects_bad_settings():
    with pytest.raises(ValueError, match="backoff"):
        LossScaler(backoff=2.0)
    with pytest.raises(ValueError, match="interval"):
        LossScaler(interval=0)

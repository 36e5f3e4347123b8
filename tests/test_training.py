"""Trainer: loss falls, checkpoint/resume is bit-identical on the CPU, NaN stops with a clear message."""

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import backends, optim
from xpnet.errors import FileFormatError, TrainingError
from xpnet.models import MLP, DeepConvNet, SimpleConvNet
from xpnet.training import BatchIterator, Trainer, load_checkpoint


def synthetic_digits(n, seed=0, size=28):
    """Images whose class decides which quadrant is bright: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, n)
    x = rng.random((n, 1, size, size), dtype=np.float32) * 0.3
    h = size // 2
    for k in range(4):
        r, c = divmod(k, 2)
        x[t == k, :, r * h : (r + 1) * h, c * h : (c + 1) * h] += 0.7
    return x, t


def test_batch_iterator_covers_every_example_once_per_epoch(backend):
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    it = BatchIterator(x, np.arange(10), batch_size=3, seed=1)
    seen = np.concatenate([backend.asnumpy(t) for _, t in it.epoch()])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(b) for b, _ in it.epoch()] == [3, 3, 3, 1]
    assert not np.array_equal(seen, np.concatenate([backend.asnumpy(t) for _, t in it.epoch()]))


def test_batch_iterator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        BatchIterator(np.zeros((4, 2), np.float32), np.zeros(4, int), batch_size=0)
    with pytest.raises(ValueError, match="larger than the dataset"):
        BatchIterator(np.zeros((4, 2), np.float32), np.zeros(4, int), batch_size=5, drop_last=True)
    with pytest.raises(ValueError, match="3 inputs but 4 labels"):
        BatchIterator(np.zeros((3, 2), np.float32), np.zeros(4, int))


def test_trainer_learns_and_writes_history(tmp_path, backend):
    train, test = synthetic_digits(400), synthetic_digits(100, seed=1)
    model = SimpleConvNet(input_dim=(1, 28, 28), filter_num=8, hidden_size=32, output_size=4, seed=0)
    trainer = Trainer(model, optim.Adam(lr=0.003), train, test, epochs=3, batch_size=50, out_dir=str(tmp_path),
                      progress=False)
    history = trainer.fit()
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["test_acc"] >= 0.95
    for name in ("checkpoint.npz", "metrics.json", "metrics.csv", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


OPTIMIZERS = {"adam": optim.Adam, "adamw+cosine": lambda: optim.AdamW(lr=0.002, schedule=optim.Cosine(9))}


def _deep_trainer(out_dir, epochs, make_optimizer=optim.Adam):
    train, test = synthetic_digits(120, seed=2), synthetic_digits(40, seed=3)
    model = DeepConvNet(output_size=4, seed=7)  # has dropout: exercises the saved RNG states
    return Trainer(model, make_optimizer(), train, test, epochs=epochs, batch_size=40, seed=5,
                   out_dir=str(out_dir), progress=False)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_resume_is_bit_identical(tmp_path, backend, opt):
    """On CUDA the step count, the learning rate and the dropout offsets live on the device too: a
    resumed run continues from them as saved (the same bias corrections, schedule and masks)."""
    straight = _deep_trainer(tmp_path / "a", 3, OPTIMIZERS[opt])
    straight.fit()
    first = _deep_trainer(tmp_path / "b", 1, OPTIMIZERS[opt])
    first.fit()
    resumed = _deep_trainer(tmp_path / "b", 3, OPTIMIZERS[opt]).resume()
    assert resumed.epoch == 1
    resumed.fit()
    for k, v in straight.model.state_dict().items():
        assert np.array_equal(v, resumed.model.state_dict()[k]), k
    for k, s in straight.optimizer.state.items():
        for name, arr in s.items():
            assert np.array_equal(arr, resumed.optimizer.state[k][name]), (k, name)
    assert [h["test_acc"] for h in straight.history] == [h["test_acc"] for h in resumed.history]


def _mlp_trainer(out_dir, dropout, epochs=1, backend=None):
    train = synthetic_digits(32, size=8)
    model = MLP(input_size=64, hidden_size_list=(8,), output_size=4, use_dropout=dropout, seed=1, backend=backend)
    return Trainer(model, optim.SGD(), train, train, epochs=epochs, batch_size=8, out_dir=str(out_dir),
                   progress=False)


@pytest.mark.parametrize("dropout", [True, False])
def test_resume_of_a_gpu_checkpoint_on_the_cpu_fails_at_once_naming_both_devices(tmp_path, monkeypatch, dropout):
    cpu = backends.get("numpy")
    with monkeypatch.context() as m:  # the same run, recorded as if it had run on a GPU
        m.setattr(cpu, "name", "cuda")
        m.setattr(cpu, "device", "cuda:0 (stand-in)")
        _mlp_trainer(tmp_path, dropout, backend=cpu).fit()
    resumed = _mlp_trainer(tmp_path, dropout, epochs=2, backend=cpu)
    if not dropout:  # no device random streams: the weights and the host shuffle move freely
        assert resumed.resume().fit()[-1]["epoch"] == 2
        return
    with pytest.raises(FileFormatError) as exc:
        resumed.resume()
    assert str(exc.value) == (f"{tmp_path / 'checkpoint.npz'}: saved on backend 'cuda' (cuda:0 (stand-in)) but "
                              "resumed on 'numpy' (cpu): its Dropout/augmentation random streams cannot continue "
                              "on another device kind; resume with --backend cuda")


def test_resume_of_a_cpu_checkpoint_elsewhere_works_only_on_the_cpu(tmp_path, backend):
    with backends.use("numpy"):
        _mlp_trainer(tmp_path, dropout=True).fit()
    resumed = _mlp_trainer(tmp_path, dropout=True, epochs=2)  # built on `backend`, the current one
    if resumed.model.backend.name == "numpy":
        assert resumed.resume().fit()[-1]["epoch"] == 2
    else:  # refused before the first step, not at the first Dropout
        with pytest.raises(FileFormatError, match=r"saved on backend 'numpy' \(.*\) but resumed on 'cuda'"):
            resumed.resume()


def test_two_runs_with_the_same_seed_are_bit_identical(tmp_path):
    a, b = _deep_trainer(tmp_path / "a", 1), _deep_trainer(tmp_path / "b", 1)
    a.fit()
    b.fit()
    for k, v in a.model.state_dict().items():
        assert np.array_equal(v, b.model.state_dict()[k]), k


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    trainer = _deep_trainer(tmp_path, epochs=1)
    trainer.fit()
    before = (tmp_path / "checkpoint.npz").read_bytes()
    trainer.epochs, trainer.log_every = 2, 1  # the exact step, also on a GPU (which reads the loss every 50)
    trainer.iterator.x[5] = np.nan
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step \d+ of epoch 2.*intact"):
        trainer.fit()
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    _, _, meta = load_checkpoint(tmp_path / "checkpoint.npz")
    assert meta["epoch"] == 1


def test_curves_leave_the_callers_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from xpnet.training.history import plot_curves

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        history = [{"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.1 / e, "train_acc": 0.5, "test_acc": 0.6}
                   for e in (1, 2)]
        plot_curves(history, tmp_path / "curves.png")
        plot_curves([{k: v for k, v in h.items() if "acc" not in k} for h in history], tmp_path / "loss.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    for name in ("curves.png", "loss.png"):  # a regression's history has no accuracy to draw
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trainer_fits_a_regression_mlp_with_mean_squared_error(backend):
    from xpnet.models import MLP

    rng = np.random.default_rng(3)
    A = rng.standard_normal((8, 3)).astype(np.float32)
    x = rng.standard_normal((600, 8)).astype(np.float32)
    t = np.tanh(x @ A).astype(np.float32)  # (N, 3) real-valued targets
    model = MLP(input_size=8, hidden_size_list=[16], output_size=3, loss="mse", seed=0)
    assert not model.classifies
    trainer = Trainer(model, optim.Adam(lr=0.02), (x[:500], t[:500]), (x[500:], t[500:]), epochs=40,
                      batch_size=50, progress=False)
    history = trainer.fit()
    # the baseline: always predicting the training targets' mean, under the same 0.5 * sum / N loss
    baseline = 0.5 * float(((t[500:] - t[:500].mean(axis=0)) ** 2).sum(axis=1).mean())
    assert history[-1]["test_loss"] < 0.1 * baseline
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert "test_acc" not in history[-1] and "train_acc" not in history[-1]  # no accuracy for a regression
    y = backend.asnumpy(model.predict(x[500:]))
    want = 0.5 * float(((y - t[500:]) ** 2).sum(axis=1).mean())  # float32 sums over 100 x 3 on both sides
    assert_close(history[-1]["test_loss"], want, terms=300 + 3, scale=want, dtype=np.float32)


class _Recording:
    """A distribution of one rank that logs the Trainer's calls and hands back zero gradients."""

    rank, size, is_root = 0, 1, True

    def __init__(self):
        self.calls = []

    def broadcast_params(self, params):
        self.calls.append(("broadcast", sorted(params)))

    def average_grads(self, grads, count):
        self.calls.append(("average", count))
        return {k: g * 0 for k, g in grads.items()}

    def sum(self, values):
        return list(values)


def test_trainer_broadcasts_first_and_steps_with_the_distributions_gradients(backend):
    from xpnet.models import MLP

    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((10, 4)).astype(np.float32), rng.integers(0, 3, 10)
    model = MLP(input_size=4, hidden_size_list=[5], output_size=3, seed=0)
    before = {k: backend.asnumpy(p).copy() for k, p in model.params.items()}
    dist = _Recording()
    Trainer(model, optim.SGD(lr=1.0), (x, t), (x, t), epochs=1, batch_size=4, progress=False,
            distribution=dist).fit()
    assert dist.calls == [("broadcast", sorted(model.params)), ("average", 4), ("average", 4), ("average", 2)]
    for k, p in model.params.items():  # the optimizer saw the averaged (here zero) gradients, not the model's
        np.testing.assert_array_equal(backend.asnumpy(p), before[k])

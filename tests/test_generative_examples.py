"""DCGAN networks, and the two examples end to end on tiny synthetic data (no MNIST needed)."""

import importlib.util
import json
import os

import numpy as np
import pytest
from tolerance import assert_close

import xpnet
from xpnet.models import DeepConvNet, Discriminator, Generator

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_and_discriminator_shapes_and_round_trip(backend, tmp_path, rng):
    G, D = Generator(z_dim=8, widths=(6, 4)), Discriminator(widths=(4, 6))
    images = G.predict(G.noise(5, rng))
    assert images.shape == (5, 1, 28, 28) and images.dtype == np.float32
    assert float(abs(images).max()) <= 1.0  # tanh
    assert D.predict(images).shape == (5, 1)
    G.save(tmp_path / "g.npz")
    z = G.noise(3, rng)
    np.testing.assert_array_equal(backend.asnumpy(xpnet.load(tmp_path / "g.npz").predict(z)),
                                  backend.asnumpy(G.predict(z)))
    with pytest.raises(TypeError, match="no loss of its own"):
        G.loss(z, None)


def test_tanh_bounds_the_generator(backend, rng):
    G = Generator(z_dim=4, widths=(4, 4))
    G.net.set_array("deconv3.W", G.params["deconv3.W"] * 1e4)
    out = backend.asnumpy(G.predict(G.noise(4, rng)))
    assert np.abs(out).max() <= 1.0 and np.abs(out).max() > 0.99  # saturated, never beyond


def test_gan_step_updates_both_networks_as_specified(backend, rng):
    """D's first Adam step follows the sign of its real + generated gradient; G's lowers its own loss."""
    dcgan = _example("dcgan")
    lr = 0.01
    G, D = Generator(z_dim=8, widths=(8, 4), seed=1), Discriminator(widths=(4, 8), seed=2)
    gan = dcgan.GAN(G, D, lr=lr, beta1=0.5)
    real = rng.random((16, 1, 28, 28)).astype(np.float32) * 2 - 1
    z = G.noise(16, rng)
    ones, zeros = np.ones((16, 1), np.float32), np.zeros((16, 1), np.float32)
    old_G = Generator(z_dim=8, widths=(8, 4), seed=1)
    fake = G.net.forward(backend.asarray(z), train=True)
    D.loss(real, ones)
    g_real = {k: backend.asnumpy(g).copy() for k, g in D.backward().items()}
    D.loss(fake, zeros)
    g_sum = {k: g_real[k] + backend.asnumpy(g) for k, g in D.backward().items()}
    before_D = {k: backend.asnumpy(v).copy() for k, v in D.params.items()}

    loss_D, loss_G = gan.step(real, z)
    assert np.isfinite(loss_D) and np.isfinite(loss_G)
    for k, p in D.params.items():  # Adam's first step is -lr * g / (|g| + eps): the sign of g
        step, g = backend.asnumpy(p) - before_D[k], g_sum[k]
        big = np.abs(g) > 1e-5
        np.testing.assert_allclose(step[big], -lr * np.sign(g[big]), rtol=1e-3, err_msg=k)
    # the generator's loss it reports is against the updated D with its old weights, and its step lowered it
    def g_loss(gen):
        return float(gan.bce.forward(D.net.forward(gen.net.forward(backend.asarray(z), train=True), train=True),
                                     ones))

    assert loss_G == pytest.approx(g_loss(old_G), rel=1e-5)
    assert g_loss(G) < loss_G


def test_gan_step_moves_the_weight_average_towards_the_trained_generator(backend, rng):
    """After the first step the average is 0.1 * the old weights + 0.9 * the new (WeightAverage's warm-up)."""
    dcgan = _example("dcgan")
    G, D = Generator(z_dim=8, widths=(8, 4), seed=1), Discriminator(widths=(4, 8), seed=2)
    real = rng.random((16, 1, 28, 28)).astype(np.float32) * 2 - 1
    dcgan.GAN(G, D, lr=0.01, beta1=0.5).step(real, G.noise(16, rng))  # G no longer its seed's initial weights
    gan = dcgan.GAN(G, D, lr=0.01, beta1=0.5, G_average=dcgan.copy_of(G), ema=0.999)
    assert gan.sampler is not G
    old = {k: backend.asnumpy(v).copy() for k, v in {**G.params, **G.buffers}.items()}
    gan.step(real, G.noise(16, rng))
    for k, v in {**gan.sampler.params, **gan.sampler.buffers}.items():
        new = backend.asnumpy({**G.params, **G.buffers}[k])
        assert not np.allclose(new, old[k]), k  # the step moved it, so the check below can tell
        assert_close(backend.asnumpy(v), 0.1 * old[k] + 0.9 * new, terms=3, scale=np.abs(new) + np.abs(old[k]),
                     dtype=np.float32, err_msg=k)
    assert dcgan.GAN(G, D, lr=0.01, beta1=0.5, G_average=dcgan.copy_of(G), ema=0).sampler is G


def test_gan_schedule_drives_both_learning_rates(rng):
    """--lr-decay cosine over 4 steps: after 2 steps both optimizers are at half the lr (cos(pi/2) = 0)."""
    from xpnet.optim import Cosine

    dcgan = _example("dcgan")
    G, D = Generator(z_dim=8, widths=(8, 4), seed=1), Discriminator(widths=(4, 8), seed=2)
    gan = dcgan.GAN(G, D, lr=0.01, beta1=0.5, schedule=Cosine(4))
    for _ in range(2):
        gan.step(rng.random((8, 1, 28, 28)).astype(np.float32) * 2 - 1, G.noise(8, rng))
    assert gan.opt_G.current_lr() == pytest.approx(0.005) and gan.opt_D.current_lr() == pytest.approx(0.005)


@pytest.mark.slow
def test_dcgan_example_writes_grids_scores_and_models(tmp_path, monkeypatch, rng):
    dcgan = _example("dcgan")
    images = rng.random((96, 1, 28, 28)).astype(np.float32)
    monkeypatch.setattr(dcgan, "load_mnist", lambda flatten: ((images, None), None))
    DeepConvNet(seed=0).save(tmp_path / "clf.npz")
    out = tmp_path / "run"
    dcgan.main(["--epochs", "2", "--batch-size", "32", "--samples", "50", "--classifier", str(tmp_path / "clf.npz"),
                "--out", str(out)])
    assert {"samples_epoch1.png", "samples_epoch2.png", "generator.npz", "generator_average.npz",
            "discriminator.npz", "metrics.json"} <= set(os.listdir(out))
    result = json.loads((out / "metrics.json").read_text())
    assert [h["steps"] for h in result["history"]] == [3, 3]
    final = result["final"]
    assert sum(final["histogram"]) == 50 and 0 <= final["confident"] <= 1 and 0 <= final["entropy"] <= np.log(10)
    assert sum(final["trained_generator"]["histogram"]) == 50  # the trained generator is scored beside the average
    # --init continues from the saved networks: the first grid of the new run is drawn by them, not a fresh G
    trained = xpnet.load(out / "generator.npz")
    dcgan.main(["--epochs", "1", "--batch-size", "32", "--samples", "50", "--classifier", str(tmp_path / "clf.npz"),
                "--init", str(out), "--lr", "1e-12", "--out", str(tmp_path / "more")])
    again = xpnet.load(tmp_path / "more" / "generator.npz")
    for k, v in trained.params.items():  # lr 1e-12: the weights barely move from where the first run left them
        np.testing.assert_allclose(again.backend.asnumpy(again.params[k]), trained.backend.asnumpy(v), atol=1e-9)


def test_dcgan_budget_counts_the_clock_it_is_told(tmp_path, monkeypatch, rng):
    """--minutes counts wall-clock training time by default, CPU time with --clock cpu (fake clocks here)."""
    dcgan = _example("dcgan")
    images = rng.random((96, 1, 28, 28)).astype(np.float32)
    monkeypatch.setattr(dcgan, "load_mnist", lambda flatten: ((images, None), None))
    DeepConvNet(seed=0).save(tmp_path / "clf.npz")
    ticks = {"wall": 0.0, "cpu": 0.0}

    def fake(name, step):
        def clock():
            ticks[name] += step
            return ticks[name]
        return clock

    monkeypatch.setitem(dcgan.CLOCKS, "wall", fake("wall", 100.0))  # 100 s a reading: past 1 minute at once
    monkeypatch.setitem(dcgan.CLOCKS, "cpu", fake("cpu", 0.0))  # never advances
    steps = {}
    for clock in ("wall", "cpu"):
        out = tmp_path / clock
        dcgan.main(["--epochs", "1", "--minutes", "1", "--clock", clock, "--batch-size", "32", "--samples", "10",
                    "--classifier", str(tmp_path / "clf.npz"), "--out", str(out)])
        steps[clock] = json.loads((out / "metrics.json").read_text())["history"][0]["steps"]
    assert steps == {"wall": 1, "cpu": 3}


@pytest.mark.slow
def test_fcn_example_writes_png_model_and_metrics(tmp_path, monkeypatch, rng):
    fcn = _example("fcn_segmentation")
    from xpnet.datasets import mnist_segmentation as seg

    digits = (rng.random((20, 28, 28)) > 0.7).astype(np.float32)
    data = (seg.compose(digits, rng.integers(0, 10, 20), 24, seed=0), seg.compose(digits, np.arange(20) % 10, 8))
    monkeypatch.setattr(fcn, "load_mnist_segmentation", lambda n_train, n_test, seed: data)
    out = tmp_path / "run"
    fcn.main(["--epochs", "2", "--batch-size", "8", "--out", str(out)])
    assert {"segmentation.png", "model.npz", "metrics.json"} <= set(os.listdir(out))
    result = json.loads((out / "metrics.json").read_text())
    assert len(result["history"]) == 2 and 0 <= result["final"]["mean_iou"] <= 1
    assert xpnet.load(out / "model.npz").config["num_classes"] == 11

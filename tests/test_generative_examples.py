"""DCGAN networks, and the two examples end to end on tiny synthetic data (no MNIST needed)."""

import importlib.util
import json
import os

import numpy as np
import pytest

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


def test_gan_step_moves_both_networks_the_right_way(backend, rng):
    """One update lowers D's loss on the batch it saw, and the generator's loss against that D."""
    dcgan = _example("dcgan")
    G, D = Generator(z_dim=8, widths=(8, 4), seed=1), Discriminator(widths=(4, 8), seed=2)
    gan = dcgan.GAN(G, D, lr=0.01, beta1=0.5)
    real = rng.random((16, 1, 28, 28)).astype(np.float32) * 2 - 1
    z = G.noise(16, rng)
    ones, zeros = np.ones((16, 1), np.float32), np.zeros((16, 1), np.float32)

    def d_loss():
        return float(D.loss(real, ones)) + float(D.loss(G.predict(z, train=True), zeros))

    before_D = d_loss()
    params_G = {k: backend.asnumpy(v).copy() for k, v in G.params.items()}
    loss_D, loss_G = gan.step(real, z)
    assert np.isfinite(loss_D) and np.isfinite(loss_G)
    assert loss_D == pytest.approx(before_D, rel=1e-5)  # the step reports the loss before its update
    assert all(not np.array_equal(params_G[k], backend.asnumpy(v)) for k, v in G.params.items())
    # the generator's update raised D's score of its images: its own loss, against the same D, fell
    after_G = float(gan.bce.forward(D.net.forward(G.net.forward(backend.asarray(z), train=True), train=True),
                                    ones))
    assert after_G < loss_G


@pytest.mark.slow
def test_dcgan_example_writes_grids_scores_and_models(tmp_path, monkeypatch, rng):
    dcgan = _example("dcgan")
    images = rng.random((96, 1, 28, 28)).astype(np.float32)
    monkeypatch.setattr(dcgan, "load_mnist", lambda flatten: ((images, None), None))
    DeepConvNet(seed=0).save(tmp_path / "clf.npz")
    out = tmp_path / "run"
    dcgan.main(["--epochs", "2", "--batch-size", "32", "--samples", "50", "--classifier", str(tmp_path / "clf.npz"),
                "--out", str(out)])
    assert {"samples_epoch1.png", "samples_epoch2.png", "generator.npz", "discriminator.npz",
            "metrics.json"} <= set(os.listdir(out))
    result = json.loads((out / "metrics.json").read_text())
    assert [h["steps"] for h in result["history"]] == [3, 3]
    final = result["final"]
    assert sum(final["histogram"]) == 50 and 0 <= final["confident"] <= 1 and 0 <= final["entropy"] <= np.log(10)


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

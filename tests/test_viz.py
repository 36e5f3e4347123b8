"""Figure 8.2: misclassified() finds the wrong examples; plot_misclassified() writes an image atomically."""

import os

import numpy as np
import pytest

from xpnet.errors import ShapeError
from xpnet.models import MLP
from xpnet.viz import misclassified, plot_misclassified

PNG = b"\x89PNG\r\n\x1a\n"


def argmax_model(backend, classes=4):
    """A one-layer MLP with identity weights: it predicts argmax(x), so its mistakes are known."""
    model = MLP(input_size=classes, hidden_size_list=[], output_size=classes, dtype="float64")
    model.net.set_array("fc1.W", backend.asarray(np.eye(classes)), "params")
    model.net.set_array("fc1.b", backend.asarray(np.zeros(classes)), "params")
    return model


def test_misclassified_returns_the_wrong_indices_and_predictions(backend):
    rng = np.random.default_rng(0)
    x = rng.random((23, 4))
    pred = x.argmax(axis=1)
    t = pred.copy()
    wrong = np.array([2, 5, 6, 17, 22])
    t[wrong] = (pred[wrong] + 1) % 4
    idx, got = misclassified(argmax_model(backend), backend.asarray(x), t, batch_size=5)
    assert idx.dtype == np.int64 and got.dtype == np.int64
    assert idx.tolist() == wrong.tolist()
    assert got.tolist() == pred[wrong].tolist()
    one_hot = np.eye(4)[t]
    idx2, _ = misclassified(argmax_model(backend), x, backend.asarray(one_hot))
    assert idx2.tolist() == wrong.tolist()


def test_misclassified_rejects_bad_arguments(backend):
    model = argmax_model(backend)
    with pytest.raises(ShapeError, match="3 inputs but 2 labels"):
        misclassified(model, np.zeros((3, 4)), np.zeros(2, int))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        misclassified(model, np.zeros((3, 4)), np.zeros(3, int), batch_size=0)


def digits(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def test_plot_misclassified_writes_a_png(tmp_path, backend):
    x, t = digits(30)
    pred = t.copy()
    pred[::3] = (t[::3] + 1) % 10  # 10 wrong
    path = tmp_path / "wrong.png"
    assert plot_misclassified(backend.asarray(x), t, pred, path) == (10, 10)
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000
    assert plot_misclassified(x, t, pred, str(path), max_images=4, cols=2) == (4, 10)
    assert path.read_bytes()[:8] == PNG
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_plot_misclassified_accepts_other_layouts_and_one_hot(tmp_path):
    x, t = digits(6)
    pred = (t + 1) % 10
    assert plot_misclassified(x.reshape(6, 784), np.eye(10)[t], pred, tmp_path / "flat.png") == (6, 6)
    assert plot_misclassified(x[:, 0], t, pred, tmp_path / "hw.svg") == (6, 6)
    rgb = np.repeat(x, 3, axis=1)
    assert plot_misclassified(rgb, t, pred, tmp_path / "rgb.png", max_images=3) == (3, 6)
    assert (tmp_path / "hw.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_plot_misclassified_with_nothing_wrong_still_writes(tmp_path):
    x, t = digits(5)
    assert plot_misclassified(x, t, t, tmp_path / "none.png") == (0, 0)
    assert (tmp_path / "none.png").read_bytes()[:8] == PNG


def test_plot_misclassified_bad_paths_name_the_path(tmp_path):
    x, t = digits(4)
    missing = tmp_path / "no" / "such" / "dir" / "out.png"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        plot_misclassified(x, t, (t + 1) % 10, missing)
    assert info.value.filename == str(missing)
    with pytest.raises(IsADirectoryError, match="got a directory"):
        plot_misclassified(x, t, (t + 1) % 10, tmp_path)
    with pytest.raises(ValueError, match=r"path must end in \.png, \.pdf, \.svg, got '.*out\.txt'"):
        plot_misclassified(x, t, (t + 1) % 10, tmp_path / "out.txt")
    assert os.listdir(tmp_path) == []


def test_plot_misclassified_rejects_bad_arguments(tmp_path):
    x, t = digits(4)
    out = tmp_path / "out.png"
    with pytest.raises(ShapeError, match="same length, got 4, 4 and 3"):
        plot_misclassified(x, t, t[:3], out)
    with pytest.raises(ValueError, match="max_images must be a positive integer, got 0"):
        plot_misclassified(x, t, t, out, max_images=0)
    with pytest.raises(ValueError, match="cols must be a positive integer, got 2.5"):
        plot_misclassified(x, t, t, out, cols=2.5)
    with pytest.raises(ShapeError, match="square number of pixels, got 10"):
        plot_misclassified(np.zeros((4, 10)), t, (t + 1) % 10, out)
    assert not out.exists()

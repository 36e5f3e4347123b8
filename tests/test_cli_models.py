"""The CLI with the deeper models: --model-arg, training and evaluating them, and --misclassified."""

import pytest
from test_cli import assert_one_line_error, make_idx_dir

from xpnet.cli.main import main


@pytest.fixture
def data(tmp_path):
    make_idx_dir(tmp_path, n_train=90, n_test=30, size=16)
    return str(tmp_path)


@pytest.mark.parametrize("model, extra", [
    ("vgg16", ["--model-arg", "width=0.0625", "--model-arg", "hidden_size=16", "--model-arg", "batchnorm=true"]),
    ("resnet", ["--model-arg", "widths=[4, 8]", "--model-arg", "blocks=[1, 1]"]),
    ("inception", ["--model-arg", "stem=8"]),
])
def test_train_and_eval_a_deeper_model_with_model_args(tmp_path, data, model, extra, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", data, "--model", model, *extra, "--epochs", "1", "--batch-size", "30",
            "--augment", "rotate=5", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    assert main(["eval", str(out / "model.npz"), "--dataset", data]) == 0  # rebuilt from the saved config
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


def test_eval_draws_the_misclassified_images(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", data, "--model", "simple_convnet", "--epochs", "1", "--batch-size", "30",
                 "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    png = tmp_path / "wrong.png"
    assert main(["eval", str(out / "model.npz"), "--dataset", data, "--misclassified", str(png),
                 "--max-images", "4"]) == 0
    text = capsys.readouterr().out
    wrong = round((1 - float(text.split("test accuracy: ")[1].split()[0])) * 30)
    assert f"drew {min(4, wrong)} of {wrong} misclassified images in {png}" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, fragment", [
    (["train", "--model", "resnet", "--model-arg", "depth=3"], "resnet has no argument 'depth'; its arguments:"),
    (["train", "--model", "vgg16", "--model-arg", "width"], "--model-arg: expected KEY=VALUE, got 'width'"),
    (["train", "--dataset", "DATA", "--model", "resnet", "--model-arg", "widths=[16]"],
     "widths and blocks must be equally long"),
    (["eval", "m.npz", "--max-images", "0"], "--max-images must be positive, got 0"),
    (["eval", "/nonexistent/model.npz", "--misclassified", "/nonexistent/dir/x.png"], "no such file"),
])
def test_errors_are_one_line(args, fragment, data, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing is written in the checkout if an argument slips through
    code = main([data if a == "DATA" else a for a in args])
    assert_one_line_error(code, capsys.readouterr().err, fragment)
    assert not (tmp_path / "runs").exists()  # a run that could not start leaves no directory behind

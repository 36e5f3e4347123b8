"""The command line: user errors end in one line on stderr and a non-zero exit; train/eval/info work."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from xpnet import backends
from xpnet.cli.main import main


def run_cli(*args, env=None):
    """Run ``python -m xpnet`` in a subprocess; returns (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True, env=full_env,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xpnet: error: ")
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.mark.parametrize("args, fragments", [
    (["train", "--epochs", "0"], ["--epochs must be positive, got 0"]),
    (["train", "--batch-size", "-5"], ["--batch-size must be positive, got -5"]),
    (["train", "--lr", "0"], ["--lr must be positive, got 0.0"]),
    (["train", "--optimizer", "adamax"], ["unknown optimizer 'adamax'", "adam"]),
    (["train", "--dataset", "/nonexistent/dir"], ["'mnist' or a directory", "/nonexistent/dir"]),
    (["train", "--resume", "/nonexistent/run"], ["no checkpoint to resume from", "/nonexistent/run"]),
    (["eval", "/nonexistent/model.npz"], ["no such file"]),
    (["eval"], ["either a MODEL file or --book-params"]),
    (["info", "--backend", "tpu"], ["unknown backend 'tpu'", "numpy"]),
])
def test_user_errors_are_one_line(args, fragments, capsys):
    code = main(args)
    assert_one_line_error(code, capsys.readouterr().err, *fragments)


def test_bad_backend_env_is_one_line_from_the_real_command():
    code, _, err = run_cli("info", env={"XPNET_BACKEND": "tpu"})
    assert_one_line_error(code, err, "XPNET_BACKEND='tpu'", "valid names")


def test_cuda_without_cupy_is_one_line(monkeypatch, capsys):
    from xpnet import backends

    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backends, "_instances", {k: v for k, v in backends._instances.items() if k != "cuda"})
    code = main(["info", "--backend", "cuda"])
    assert_one_line_error(code, capsys.readouterr().err, "needs CuPy", 'pip install "xpnet[cuda12]"')


def test_debug_shows_the_traceback():
    code, _, err = run_cli("--debug", "train", "--epochs", "0")
    assert code != 0 and "Traceback" in err and "ValueError" in err


def test_corrupted_model_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    code = main(["eval", str(bad)])
    assert_one_line_error(code, capsys.readouterr().err, "model.npz")


def test_info_describes_the_backend(capsys):
    assert main(["info", "--backend", "numpy"]) == 0  # the CPU report whatever XPNET_BACKEND says
    out = capsys.readouterr().out
    assert "backend: numpy" in out and "blas:" in out and "backends available: numpy" in out


def write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def make_idx_dir(directory, n_train=300, n_test=100, classes=3, size=12, seed=0):
    """A tiny IDX dataset whose class sets which horizontal band is bright."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        t = rng.integers(0, classes, n).astype(np.uint8)
        x = (rng.random((n, size, size)) * 60).astype(np.uint8)
        band = size // classes
        for k in range(classes):
            x[t == k, k * band : (k + 1) * band, :] += 180
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", t)


def test_train_then_eval_on_an_idx_directory(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(data)
    out = tmp_path / "run"
    code = main(["train", "--dataset", str(data), "--model", "simple_convnet", "--epochs", "2", "--batch-size",
                 "30", "--lr", "0.01", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    last = text.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    assert float(last.split(":")[1]) >= 0.9
    for name in ("model.npz", "metrics.json", "metrics.csv", "curves.png", "checkpoint.npz"):
        assert (out / name).exists(), name
    assert main(["eval", str(out / "model.npz"), "--dataset", str(data)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


def test_resume_continues_from_the_checkpoint(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(data, n_train=120, n_test=40)
    common = ["--dataset", str(data), "--model", "mlp", "--batch-size", "40", "--no-progress"]
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "resumed from" in text and "at epoch 1" in text
    with np.load(tmp_path / "a" / "model.npz") as a, np.load(tmp_path / "b" / "model.npz") as b:
        for k in a.files:
            if k != "__meta__":
                assert np.array_equal(a[k], b[k]), k


def test_mixed_training_and_eval_per_dtype(tmp_path, capsys):
    import json

    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(data, n_train=120, n_test=40)
    common = ["--dataset", str(data), "--model", "mlp", "--batch-size", "40", "--lr", "0.01", "--no-progress"]
    assert main(["train", *common, "--epochs", "1", "--dtype", "mixed", "--out", str(tmp_path / "m")]) == 0
    assert main(["train", *common, "--epochs", "2", "--dtype", "mixed", "--out", str(tmp_path / "m"), "--resume"]) == 0
    history = json.loads((tmp_path / "m" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["loss_scale"] >= 2.0**15
    with np.load(tmp_path / "m" / "model.npz") as f:  # the float32 masters are saved
        assert all(f[k].dtype == np.float32 for k in f.files if k != "__meta__")
    capsys.readouterr()
    for dtype in ("float16", "float64"):
        assert main(["eval", str(tmp_path / "m" / "model.npz"), "--dataset", str(data), "--dtype", dtype]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].startswith(f"{dtype} on {backends.current().name}: 40 images in") and "images/s" in lines[0]
        assert lines[-1].startswith("test accuracy: ")
    code = main(["eval", str(tmp_path / "m" / "model.npz"), "--dataset", str(data), "--dtype", "bfloat16"])
    refused = f"bfloat16 is not supported on backend '{backends.current().name}'"
    assert_one_line_error(code, capsys.readouterr().err, refused, "float16, float32, float64")

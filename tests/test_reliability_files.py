"""Reliability: damaged datasets, checkpoints, model and pickle files, and full or unwritable disks.

Every case goes through the command line and asserts its exit code and its one-line message; the
output-directory cases also assert that the last good checkpoint survives.
"""

import contextlib
import errno
import gzip
import os
import pickle
import random
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from reliability_helpers import (
    N_TRAIN,
    assert_one_line_error,
    assert_same_arrays,
    model_arrays,
    run_main,
    tiny_idx,
    train_args,
)
from test_datasets import counting_source, expect, fake_raw, idx_bytes

import xpnet
from xpnet import serialization
from xpnet.cli.main import main
from xpnet.datasets import mnist
from xpnet.errors import FileFormatError
from xpnet.fileio import atomic_write
from xpnet.training import load_checkpoint

IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """The tiny dataset and a finished one-epoch run on it (copy before changing anything)."""
    root = tmp_path_factory.mktemp("base")
    data = tiny_idx(root / "data")
    assert main(train_args(data, root / "run")) == 0
    return root


@pytest.fixture
def run_copy(base_run, tmp_path):
    """``(data, run)``: the dataset and a private copy of the finished run."""
    shutil.copytree(base_run / "run", tmp_path / "run")
    return str(base_run / "data"), tmp_path / "run"


# -- dataset files -------------------------------------------------------------------------------------
def _gz(path, edit):
    path.write_bytes(gzip.compress(edit(gzip.decompress(path.read_bytes()))))


def _truncate_payload(d):
    _gz(d / IMAGES, lambda b: b[:-10])


def _cut_gzip_stream(d):
    data = (d / IMAGES).read_bytes()
    (d / IMAGES).write_bytes(data[: len(data) // 2])


def _wrong_magic(d):
    _gz(d / LABELS, lambda b: b"\x01\x00" + b[2:])


def _trailing_bytes(d):
    _gz(d / LABELS, lambda b: b + b"\x00\x00\x00")


def _fewer_labels(d):
    _gz(d / LABELS, lambda b: b[:4] + (N_TRAIN - 1).to_bytes(4, "big") + b[8:-1])


def _missing_file(d):
    (d / "t10k-labels-idx1-ubyte.gz").unlink()


def _empty_split(d):
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((0, 12, 12), np.uint8))))
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(0, np.uint8))))


def _other_size(d):
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((20, 10, 10), np.uint8))))


def _int16_images(d):
    (d / IMAGES).write_bytes(gzip.compress(idx_bytes(np.zeros((N_TRAIN, 12, 12), np.int16))))


@pytest.mark.parametrize("damage, fragments", [
    (_truncate_payload, [IMAGES, "truncated payload", "needs 8640 data bytes, found 8630"]),
    (_cut_gzip_stream, ["cannot read IDX file", IMAGES]),
    (_wrong_magic, [LABELS, "not an IDX file", "expected magic bytes 00 00, found 01 00"]),
    (_trailing_bytes, [LABELS, "trailing bytes after payload", "needs 60 data bytes, found 63"]),
    (_fewer_labels, ["train has 60 images but 59 labels"]),
    (_missing_file, ["no t10k labels file", "t10k-labels-idx1-ubyte.gz"]),
    (_empty_split, ["the t10k split is empty"]),
    (_other_size, ["train images are 12x12 but t10k images are 10x10"]),
    (_int16_images, ["train images must be (N, H, W) uint8, found (60, 12, 12) int16"]),
], ids=["truncated-payload", "truncated-gzip", "wrong-magic", "trailing-bytes", "header-count-mismatch",
        "missing-file", "empty-split", "size-mismatch", "wrong-dtype"])
def test_damaged_dataset_is_one_line_and_nothing_is_written(tmp_path, capsys, damage, fragments):
    data = tmp_path / "data"
    tiny_idx(data)
    damage(data)
    code, _, err = run_main(capsys, *train_args(data, tmp_path / "run"))
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_unreadable_dataset_directory_is_one_line(tmp_path, capsys, monkeypatch):
    """Simulated: tests may run as root, whom chmod does not stop (see the next test for the real one)."""
    data = tiny_idx(tmp_path / "data")
    real = os.listdir

    def listdir(path="."):
        if os.fspath(path) == data:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), data)
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    code, _, err = run_main(capsys, *train_args(data, tmp_path / "run"))
    assert_one_line_error(code, err, f"cannot list MNIST directory {data}", "Permission denied")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads a chmod 000 directory anyway; the simulated case above covers it")
def test_unreadable_dataset_directory_for_real(tmp_path, capsys):
    data = tiny_idx(tmp_path / "data")
    os.chmod(data, 0)
    try:
        code, _, err = run_main(capsys, *train_args(data, tmp_path / "run"))
    finally:
        os.chmod(data, 0o755)
    assert_one_line_error(code, err, data, "Permission denied")


def test_mnist_hash_mismatch_and_corrupt_cache_via_cli(tmp_path, capsys, monkeypatch):
    raw = fake_raw(n_train=8, n_test=4, side=28)
    expect(monkeypatch, raw)
    tampered = {k: v.copy() for k, v in raw.items()}
    tampered["train_labels"][0] ^= 1
    monkeypatch.setattr(mnist, "SOURCES", [counting_source(tampered, "tampered mirror")[0]])
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mnist.npz").write_bytes(b"PK\x03\x04 not a zip")
    code, _, err = run_main(capsys, "train", "--model", "mlp", "--out", tmp_path / "run", "--no-progress")
    warning, error = err.strip().splitlines()  # the refused cache is a one-line warning, the failure one line
    assert warning.startswith("xpnet: warning: refusing MNIST cache") and "moved it to" in warning
    assert_one_line_error(code, error, "could not get MNIST from any source", "tampered mirror",
                          "train_labels: SHA-256 mismatch")
    assert "Traceback" not in err and os.listdir(tmp_path / "cache") == ["mnist.npz.refused"]
    assert (tmp_path / "cache" / "mnist.npz.refused").read_bytes() == b"PK\x03\x04 not a zip"  # never deleted


# -- checkpoints and model files -----------------------------------------------------------------------
def _resume(data, run, *extra):
    return train_args(data, run, "--resume", *extra, epochs=2)


def test_truncated_checkpoint_refuses_to_resume(run_copy, capsys):
    data, run = run_copy
    ckpt = run / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size * 2 // 3])
    code, _, err = run_main(capsys, *_resume(data, run))
    assert_one_line_error(code, err, str(ckpt), "not a readable xpnet file (truncated or corrupted?)")


def test_tampered_checkpoint_fails_its_content_hash(run_copy, capsys):
    data, run = run_copy
    ckpt = run / "checkpoint.npz"
    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["model/fc1.W"][0, 0] += 1.0  # the metadata (and its hash) stay as they were
    np.savez(ckpt, **arrays)
    code, _, err = run_main(capsys, *_resume(data, run))
    assert_one_line_error(code, err, str(ckpt), "content hash mismatch; the file is corrupted")


@pytest.mark.parametrize("extra, fragments", [
    (["--model", "simple_convnet"], ["--model simple_convnet (the run used mlp)", "the run's own arguments"]),
    (["--optimizer", "sgd"], ["--optimizer sgd (the run used adam)", "the run's own arguments"]),
], ids=["architecture", "optimizer"])
def test_checkpoint_of_another_run_refuses_to_resume(run_copy, capsys, extra, fragments):
    data, run = run_copy
    before = (run / "checkpoint.npz").read_bytes()
    code, _, err = run_main(capsys, *_resume(data, run, *extra))
    assert_one_line_error(code, err, *fragments)
    assert (run / "checkpoint.npz").read_bytes() == before


def test_checkpoint_of_a_newer_format_refuses_to_resume(run_copy, capsys):
    data, run = run_copy
    ckpt = run / "checkpoint.npz"
    arrays, meta = serialization.read_npz(ckpt, "xpnet-checkpoint")
    serialization.write_npz(ckpt, arrays, {**meta, "format_version": serialization.FORMAT_VERSION + 1})
    code, _, err = run_main(capsys, *_resume(data, run))
    assert_one_line_error(code, err, f"format version {serialization.FORMAT_VERSION + 1} is newer", "upgrade xpnet")


def test_eval_of_a_checkpoint_says_it_is_not_a_model_file(run_copy, capsys):
    data, run = run_copy
    code, _, err = run_main(capsys, "eval", run / "checkpoint.npz", "--dataset", data)
    assert_one_line_error(code, err, "expected a xpnet-model file, got 'xpnet-checkpoint'")


def test_damaged_model_files_never_load_wrong_parameters(run_copy):
    """Truncations and bit flips anywhere: a FileFormatError, or (flips in zip padding) the exact parameters."""
    _, run = run_copy
    good = (run / "model.npz").read_bytes()
    want = model_arrays(run / "model.npz")
    rnd = random.Random(0)
    bad = run / "bad.npz"
    outcomes = {"refused": 0, "intact": 0}
    for i in range(60):
        blob = bytearray(good[: rnd.randrange(len(good))] if i < 20 else good)
        if i >= 20:
            blob[rnd.randrange(len(blob))] ^= 1 << rnd.randrange(8)
        bad.write_bytes(bytes(blob))
        try:
            model = xpnet.load(bad)
        except FileFormatError:
            outcomes["refused"] += 1
            continue
        assert_same_arrays(model.state_dict(), want)
        outcomes["intact"] += 1
    assert outcomes["refused"] >= 50, outcomes


class _Planted:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_malicious_book_params_through_the_real_command(tmp_path):
    target = tmp_path / "pwned"
    evil = tmp_path / "deep_convnet_params.pkl"
    evil.write_bytes(pickle.dumps({"W1": _Planted(target)}))
    p = subprocess.run([sys.executable, "-m", "xpnet", "eval", "--book-params", str(evil)], capture_output=True,
                       text=True, timeout=120)
    assert_one_line_error(p.returncode, p.stderr, str(evil), "refusing to unpickle global posix.system")
    assert p.returncode == 1 and not target.exists()


@pytest.mark.parametrize("blob, fragment", [
    (pickle.dumps({"W1": np.zeros((16, 1, 3, 3))})[:40], "truncated"),
    (b"this is not a pickle", "UnpicklingError"),
    (b"", "EOFError"),
], ids=["truncated", "garbage", "empty"])
def test_damaged_book_params_are_one_line(tmp_path, capsys, blob, fragment):
    path = tmp_path / "params.pkl"
    path.write_bytes(blob)
    code, _, err = run_main(capsys, "eval", "--book-params", path)
    assert_one_line_error(code, err, str(path), "not a readable pickle", fragment)


# -- the output directory: full, unwritable, taken -----------------------------------------------------
class _FullDisk:
    """A file whose disk fills up after ``room`` bytes."""

    def __init__(self, f, room):
        self._f, self._room = f, room

    def write(self, data):
        if len(data) > self._room:
            self._f.write(bytes(data[: self._room]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _fill_disk_at(monkeypatch, name, nth):
    """Make the ``nth`` atomic write of a file called ``name`` run out of space half-way."""
    seen = []

    @contextlib.contextmanager
    def writer(path, mode="wb"):
        with atomic_write(path, mode) as f:
            if os.path.basename(path) == name:
                seen.append(path)
                if len(seen) == nth:
                    yield _FullDisk(f, room=1000)
                    return
            yield f

    monkeypatch.setattr(serialization, "atomic_write", writer)


def test_disk_full_at_the_second_checkpoint_keeps_the_first(tmp_path, capsys, monkeypatch):
    data, run = tiny_idx(tmp_path / "data"), tmp_path / "run"
    _fill_disk_at(monkeypatch, "checkpoint.npz", 2)
    code, _, err = run_main(capsys, *train_args(data, run, epochs=3))
    assert_one_line_error(code, err, f"could not write the checkpoint of epoch 2 to {run / 'checkpoint.npz'}",
                          "No space left on device", "the previous checkpoint is intact")
    _, _, meta = load_checkpoint(run / "checkpoint.npz")  # intact and loadable: hash verified
    assert meta["epoch"] == 1
    assert sorted(os.listdir(run)) == [".xpnet.lock", "checkpoint.npz", "curves.png", "metrics.csv", "metrics.json",
                                       "train.log"]  # no temp file
    monkeypatch.undo()
    code, out, err = run_main(capsys, *train_args(data, run, "--resume", epochs=2))
    assert code == 0 and "at epoch 1" in out, err


def test_disk_full_at_the_model_file_says_how_to_write_it(tmp_path, capsys, monkeypatch):
    data, run = tiny_idx(tmp_path / "data"), tmp_path / "run"
    _fill_disk_at(monkeypatch, "model.npz", 1)
    code, _, err = run_main(capsys, *train_args(data, run))
    assert_one_line_error(code, err, f"could not write {run / 'model.npz'}: No space left on device",
                          "checkpoint is intact", "to write the model file, run: xpnet train")
    assert not (run / "model.npz").exists()
    monkeypatch.undo()
    command = shlex.split(err.split("run: ", 1)[1])
    assert command[0] == "xpnet" and command[-1] == "--resume"
    code, _, err = run_main(capsys, *command[1:])
    assert code == 0 and (run / "model.npz").exists(), err


def test_directory_turning_unwritable_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    import types

    from xpnet import fileio

    def mkstemp(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(fileio, "tempfile", types.SimpleNamespace(mkstemp=mkstemp))
    data, run = tiny_idx(tmp_path / "data"), tmp_path / "run"
    code, _, err = run_main(capsys, *train_args(data, run))
    assert_one_line_error(code, err, "could not write the checkpoint of epoch 1", "Permission denied")
    assert "intact" not in err and sorted(os.listdir(run)) == [".xpnet.lock", "train.log"]  # no run to resume


def test_unwritable_output_directory_is_refused_up_front(tmp_path, capsys, monkeypatch):
    """Simulated with os.access: root writes anywhere, so chmod cannot make the case here."""
    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: os.fspath(path) != str(out))
    code, _, err = run_main(capsys, *train_args(tiny_idx(tmp_path / "data"), out))
    assert_one_line_error(code, err, str(out), "output directory is not writable")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only directory anyway")
def test_unwritable_output_directory_for_real(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    os.chmod(out, 0o500)
    try:
        code, _, err = run_main(capsys, *train_args(tiny_idx(tmp_path / "data"), out))
    finally:
        os.chmod(out, 0o755)
    assert_one_line_error(code, err, str(out), "not writable")


def test_output_path_that_is_a_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("my notes")
    code, _, err = run_main(capsys, *train_args(tiny_idx(tmp_path / "data"), out))
    assert_one_line_error(code, err, str(out), "exists and is not a directory")
    assert out.read_text() == "my notes"


def test_rerun_into_a_finished_run_refuses_to_overwrite_it(run_copy, capsys):
    data, run = run_copy
    before = {name: (run / name).read_bytes() for name in os.listdir(run)}
    code, _, err = run_main(capsys, *train_args(data, run))
    assert_one_line_error(code, err, str(run), "already holds a training run", "--resume", "another --out")
    assert {name: (run / name).read_bytes() for name in os.listdir(run)} == before

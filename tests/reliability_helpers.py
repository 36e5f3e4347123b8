"""Shared pieces of the reliability suite (tests/test_reliability_*.py): tiny datasets and CLI runs."""

import os
import pathlib
import subprocess
import sys

import numpy as np
from test_cli import assert_one_line_error, make_idx_dir  # noqa: F401 - re-exported for the suite

from xpnet.cli.main import main

# A tiny IDX dataset (60 train / 20 test images of 12x12, 3 classes) and an MLP on it: ~0.1 s an epoch.
N_TRAIN, N_TEST = 60, 20


def tiny_idx(directory, **kw):
    """Write the tiny dataset into ``directory`` (created) and return it as a str."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    make_idx_dir(directory, **{"n_train": N_TRAIN, "n_test": N_TEST, **kw})
    return str(directory)


def train_args(data, out, *extra, epochs=1):
    """``xpnet train`` arguments for the tiny MLP run."""
    return ["train", "--dataset", str(data), "--model", "mlp", "--batch-size", "20", "--no-progress",
            "--out", str(out), "--epochs", str(epochs), *extra]


def run_main(capsys, *args):
    """``xpnet ARGS`` in this process; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def popen_cli(*args):
    """Start ``python -m xpnet ARGS`` (the real command) with its own pipes."""
    return subprocess.Popen([sys.executable, "-m", "xpnet", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def model_arrays(path):
    """The arrays of a saved model or checkpoint (without its metadata)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "__meta__"}


def assert_same_arrays(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k

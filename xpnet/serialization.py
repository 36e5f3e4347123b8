"""Saving and loading models as ``.npz`` (``allow_pickle=False``) with JSON metadata and a content hash."""

import hashlib
import json
import os
import zipfile

import numpy as np

from xpnet.errors import FileFormatError
from xpnet.fileio import atomic_write

FORMAT = "xpnet-model"
FORMAT_VERSION = 1
META_KEY = "__meta__"


def arrays_sha256(arrays):
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` (a dict), in sorted name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_npz(path, arrays, meta):
    """Write ``arrays`` plus ``meta`` (JSON, with the arrays' hash added) to ``path`` atomically."""
    meta = {**meta, "sha256": arrays_sha256(arrays)}
    with atomic_write(path) as f:
        np.savez(f, **arrays, **{META_KEY: np.array(json.dumps(meta))})


def read_npz(path, expected_format):
    """Read and verify a file written by :func:`write_npz`; returns ``(arrays, meta)``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileFormatError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise FileFormatError(f"{path}: not a readable xpnet file (truncated or corrupted?): {e}") from None
    if META_KEY not in arrays:
        raise FileFormatError(f"{path}: no xpnet metadata; not a file written by xpnet")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{path}: corrupted metadata: {e}") from None
    if meta.get("format") != expected_format:
        raise FileFormatError(f"{path}: expected a {expected_format} file, got {meta.get('format')!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise FileFormatError(f"{path}: format version {meta.get('format_version')} is newer than this xpnet "
                              f"reads ({FORMAT_VERSION}); upgrade xpnet")
    if meta.get("sha256") != arrays_sha256(arrays):
        raise FileFormatError(f"{path}: content hash mismatch; the file is corrupted")
    return arrays, meta


def model_meta(model):
    from xpnet import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": model.arch, "config": model.config,
            "dtype": str(model.dtype), "xpnet_version": __version__}


def save(model, path):
    """Save ``model``'s parameters, buffers and architecture to ``path`` (``.npz``), atomically."""
    write_npz(path, model.state_dict(), model_meta(model))


def load_into(model, path):
    """Load the parameters saved at ``path`` into an existing ``model`` of the same architecture."""
    arrays, meta = read_npz(path, FORMAT)
    if meta.get("arch") != model.arch:
        raise FileFormatError(f"{path}: holds a {meta.get('arch')!r} model, not {model.arch!r}")
    return model.load_state_dict(arrays)

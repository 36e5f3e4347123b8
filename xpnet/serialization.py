"""Saving and loading models as ``.npz`` (``allow_pickle=False``) with JSON metadata and a content hash."""

import hashlib
import json
import os

import numpy as np

from xpnet.errors import FileFormatError
from xpnet.filecheck import BoundError, npz_member_names
from xpnet.filecheck import read_npz as read_npz_bounded
from xpnet.fileio import atomic_write
from xpnet.init import BudgetExceeded, allocation_budget
from xpnet.metacheck import check_weights

FORMAT = "xpnet-model"
FORMAT_VERSION = 2  # 2: the content hash covers the metadata too (version 1 files: the arrays only)
META_KEY = "__meta__"


def arrays_sha256(arrays, meta=None):
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` (a dict), in sorted name order.

    With ``meta`` (a JSON-able dict, its ``sha256`` key ignored), its canonical JSON is hashed too.
    """
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    if meta is not None:
        h.update(b"|meta|" + _canonical({k: v for k, v in meta.items() if k != "sha256"}).encode())
    return h.hexdigest()


def _canonical(meta):
    return json.dumps(json.loads(json.dumps(meta)), sort_keys=True)


def write_npz(path, arrays, meta):
    """Write ``arrays`` plus ``meta`` (JSON, with the hash of both added) to ``path`` atomically."""
    meta = {**meta, "sha256": arrays_sha256(arrays, meta)}
    with atomic_write(path) as f:
        np.savez(f, **arrays, **{META_KEY: np.array(json.dumps(meta))})


def read_meta(path, expected_format):
    """The metadata of a file written by :func:`write_npz`, read alone (not yet checked against its hash)."""
    return _parse_meta(path, _read(path, [META_KEY])[META_KEY], expected_format)


def read_npz(path, expected_format):
    """Read and verify a file written by :func:`write_npz`; returns ``(arrays, meta)``.

    Memory stays bounded by the file's size (:mod:`xpnet.filecheck`); the hash covers the metadata
    for format version 2 and the arrays alone for version 1 files, which still load.
    """
    arrays = _read(path)
    if META_KEY not in arrays:
        raise FileFormatError(f"{path}: no xpnet metadata; not a file written by xpnet")
    meta = _parse_meta(path, arrays.pop(META_KEY), expected_format)
    if meta.get("sha256") != arrays_sha256(arrays, meta if meta["format_version"] >= 2 else None):
        raise FileFormatError(f"{path}: content hash mismatch; the file is corrupted")
    return arrays, meta


def _read(path, names=None):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileFormatError(f"{path}: no such file")
    try:
        if names is not None and names[0] not in npz_member_names(path):
            raise FileFormatError(f"{path}: no xpnet metadata; not a file written by xpnet")
        return read_npz_bounded(path, names)
    except (BoundError, OSError, EOFError) as e:
        raise FileFormatError(f"{path}: not a readable xpnet file (truncated or corrupted?): {e}") from None


def _parse_meta(path, text, expected_format):
    if text.dtype.kind != "U" or text.shape != ():
        raise FileFormatError(f"{path}: field {META_KEY!r}: expected JSON text, got {text.dtype} {text.shape}")
    try:
        meta = json.loads(str(text))
    except (json.JSONDecodeError, RecursionError) as e:
        raise FileFormatError(f"{path}: corrupted metadata: {e}") from None
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: corrupted metadata: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != expected_format:
        raise FileFormatError(f"{path}: expected a {expected_format} file, got {meta.get('format')!r}")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FileFormatError(f"{path}: field 'format_version': expected an integer >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise FileFormatError(f"{path}: format version {meta.get('format_version')} is newer than this xpnet "
                              f"reads ({FORMAT_VERSION}); upgrade xpnet")
    return meta


def model_meta(model):
    from xpnet import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": model.arch, "config": model.config,
            "dtype": str(model.dtype), "xpnet_version": __version__}


def content_sha256(model):
    """The content hash ``save`` writes for ``model``: its arrays and its metadata (format version 2)."""
    return arrays_sha256(model.state_dict(), model_meta(model))


def save(model, path):
    """Save ``model``'s parameters, buffers and architecture to ``path`` (``.npz``), atomically."""
    write_npz(path, model.state_dict(), model_meta(model))


def build_declared(path, cls, config, arrays, backend=None, field="config"):
    """Build the model a file's ``config`` declares, refusing one larger than the file's ``arrays``.

    Raises:
        FileFormatError: naming the field, for a config the model rejects or one that declares more
            weights than the file holds (checked before they are allocated).
    """
    held = sum(int(a.size) for a in arrays.values())
    try:
        with allocation_budget(held):
            return cls(**config, backend=backend)
    except BudgetExceeded as e:
        raise FileFormatError(f"{path}: field {field!r} declares a larger model than the file's {held:,} values "
                              f"({e})") from None
    except (TypeError, ValueError, OverflowError, ZeroDivisionError) as e:
        raise FileFormatError(f"{path}: field {field!r}: {cls.__name__} rejects it: {e}") from None


def load_into(model, path):
    """Load the parameters saved at ``path`` into an existing ``model`` of the same architecture."""
    arrays, meta = read_npz(path, FORMAT)
    check_weights(path, arrays)
    if meta.get("arch") != model.arch:
        raise FileFormatError(f"{path}: holds a {meta.get('arch')!r} model, not {model.arch!r}")
    return model.load_state_dict(arrays)

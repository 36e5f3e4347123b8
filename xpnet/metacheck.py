"""Type and range checks of what xpnet files declare: model metadata, checkpoints, ensemble manifests.

Each check raises :class:`~xpnet.errors.FileFormatError` naming the file and the field, before the
value is used to build or restore anything.
"""

import inspect
import math

import numpy as np

from xpnet.errors import FileFormatError

DTYPES = ("float16", "float32", "float64")
NOT_CONFIG = ("self", "backend")  # constructor arguments a model file does not record


def fail(path, field, problem):
    raise FileFormatError(f"{path}: field {field!r}: {problem}")


def check_model_meta(path, meta, registry, prefix=""):
    """``meta`` of a model (a model file's, or a checkpoint's ``model`` entry): arch, config, dtype.

    ``registry`` maps architecture names to model classes (:data:`xpnet.models.REGISTRY`).
    """
    REGISTRY = registry  # noqa: N806 - the registry, whichever the caller passes
    arch = meta.get("arch")
    if arch not in REGISTRY:
        raise FileFormatError(f"{path}: unknown architecture {arch!r}; known: {', '.join(REGISTRY)}")
    config = meta.get("config", {})
    if not isinstance(config, dict):
        fail(path, f"{prefix}config", f"expected an object of constructor arguments, got {type(config).__name__}")
    accepted = [k for k in inspect.signature(REGISTRY[arch].__init__).parameters if k not in NOT_CONFIG]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        fail(path, f"{prefix}config.{unknown[0]}", f"{arch} has no argument {unknown[0]!r}; its arguments: "
             f"{', '.join(accepted)}")
    dtype = meta.get("dtype", config.get("dtype", "float32"))
    if dtype not in DTYPES:
        fail(path, f"{prefix}dtype", f"expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return arch, config


def check_weights(path, arrays, prefix=""):
    """Parameters and buffers must be finite real floating-point arrays (optimizer state: integer counts too)."""
    for name, a in arrays.items():
        if (prefix + name).startswith("optim/") and a.dtype.kind in "iu":
            continue  # a per-parameter step count
        if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
            fail(path, prefix + name, f"expected float16, float32 or float64 values, got {a.dtype}")
        if a.size and not np.isfinite(a).all():
            fail(path, prefix + name, "holds NaN or infinite values")


def _int(path, field, value, low=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        fail(path, field, f"expected an integer >= {low}, got {value!r}")
    return value


def check_checkpoint_meta(path, meta, registry):
    """The fields a checkpoint's resume relies on: model, epoch, history, optimizer, precision, rng, frozen, extra."""
    check_model_meta(path, meta.get("model") if isinstance(meta.get("model"), dict) else {}, registry, "model.")
    epoch = _int(path, "epoch", meta.get("epoch"), low=1)
    history = meta.get("history")
    if not isinstance(history, list) or len(history) != epoch:
        fail(path, "history", f"expected a list of {epoch} epoch records (one per finished epoch), got "
             f"{len(history) if isinstance(history, list) else type(history).__name__}")
    for i, record in enumerate(history):
        if not isinstance(record, dict) or record.get("epoch") != i + 1:
            fail(path, f"history[{i}]", f"expected the record of epoch {i + 1}")
        for k, v in record.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                fail(path, f"history[{i}].{k}", f"expected a finite number, got {v!r}")
    opt = meta.get("optimizer")
    if not isinstance(opt, dict) or not isinstance(opt.get("type"), str) or not isinstance(opt.get("hyperparams"),
                                                                                             dict):
        fail(path, "optimizer", "expected an object with 'type', 't' and 'hyperparams'")
    _int(path, "optimizer.t", opt.get("t"))
    precision = meta.get("precision", {"type": "FullPrecision"})  # older checkpoints: none
    if not isinstance(precision, dict) or not isinstance(precision.get("type"), str):
        fail(path, "precision", "expected an object with 'type'")
    rng = meta.get("rng")
    if not isinstance(rng, dict) or not isinstance(rng.get("iterator"), dict):
        fail(path, "rng", "expected the generator states of the model, the shuffle and the augmentation")
    for key in ("model", "augment"):
        if rng.get(key) is not None and not isinstance(rng[key], dict):
            fail(path, f"rng.{key}", f"expected an object or null, got {type(rng[key]).__name__}")
    frozen = meta.get("frozen", [])
    if not isinstance(frozen, list) or not all(isinstance(n, str) for n in frozen):
        fail(path, "frozen", "expected a list of parameter names")
    if not isinstance(meta.get("extra", {}), dict):
        fail(path, "extra", "expected an object")


def check_manifest(path, meta, fmt):
    """An ensemble manifest: ``{"format": fmt, "members": [{"path": str, "sha256": 64 hex}, ...]}``."""
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise FileFormatError(f"{path}: not an xpnet ensemble manifest (expected format {fmt!r} with members)")
    members = meta.get("members")
    if not isinstance(members, list) or not members:
        fail(path, "members", "expected a non-empty list of {\"path\": ..., \"sha256\": ...} objects")
    for i, m in enumerate(members):
        if not isinstance(m, dict):
            fail(path, f"members[{i}]", f"expected an object with 'path' and 'sha256', got {type(m).__name__}")
        if not isinstance(m.get("path"), str) or not m["path"]:
            fail(path, f"members[{i}].path", f"expected a file name, got {m.get('path')!r}")
        digest = m.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            fail(path, f"members[{i}].sha256", f"expected 64 hexadecimal digits, got {digest!r}")
    return members

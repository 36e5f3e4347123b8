"""Ensembles: several trained models whose softmax outputs are averaged (the book's section 8.1.2).

An ensemble is saved as a small JSON manifest naming its member model files (paths relative to the
manifest) and each file's SHA-256, so a member replaced or damaged after the fact is refused on load.
"""

import hashlib
import json
import os

import numpy as np

from xpnet import backends
from xpnet.errors import FileFormatError, ShapeError
from xpnet.fileio import atomic_write
from xpnet.metacheck import check_manifest
from xpnet.models.selection import batched_accuracy

FORMAT = "xpnet-ensemble"
MAX_MANIFEST = 1 << 20  # bytes: a manifest names files; a larger one is not a manifest


def softmax(scores):
    """Row-wise softmax in at least float32 (scores (N, K) on any device)."""
    xp = backends.of(scores).xp
    s = scores.astype(np.float32) if scores.dtype.itemsize < 4 else scores
    e = xp.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Ensemble:
    """Average of the members' class probabilities.

    Args:
        models: trained Models with the same number of classes and input shape (architectures may
            differ). paths: the files they were loaded from, if any (needed by :meth:`save`).

    Shapes:
        x (N, ...) -> probabilities (N, classes), on the first member's device.
    """

    def __init__(self, models, paths=None):
        models = list(models)
        if not models:
            raise ValueError("Ensemble: needs at least one model, got none")
        classes = {m.config.get("output_size") for m in models}
        if len(classes) > 1:
            raise ShapeError(f"Ensemble: members disagree on the number of classes: {sorted(classes)}")
        self.models, self.paths = models, list(paths) if paths is not None else None

    def __len__(self):
        return len(self.models)

    def predict_proba(self, x):
        """Mean softmax over members. x: (N, ...) -> (N, classes) float32 or wider."""
        be = self.models[0].backend
        total = None
        for m in self.models:
            p = be.asarray(softmax(m.predict(x)))
            total = p if total is None else total + p
        return total / len(self.models)

    def accuracy(self, x, t, batch_size=1000):
        """Fraction of ``x`` whose averaged prediction is ``t`` (indices or one-hot)."""
        return batched_accuracy(self.predict_proba, self.models[0].backend, x, t, batch_size)

    def member_accuracies(self, x, t, batch_size=1000):
        """Each member's own accuracy, in order."""
        return [m.accuracy(x, t, batch_size=batch_size) for m in self.models]

    def save(self, path):
        """Write the manifest to ``path`` (atomically); members stay where their files are."""
        if self.paths is None:
            raise ValueError("Ensemble.save: the members were not loaded from files; save each model first and "
                             "build the ensemble with Ensemble.from_files(...)")
        root = os.path.dirname(os.path.abspath(path))
        members = [{"path": os.path.relpath(os.path.abspath(p), root), "sha256": _sha256(p)} for p in self.paths]
        text = json.dumps({"format": FORMAT, "format_version": 1, "members": members}, indent=1)
        with atomic_write(path, "w") as f:
            f.write(text + "\n")

    @classmethod
    def from_files(cls, paths, backend=None):
        """Load every model file in ``paths``."""
        from xpnet import models

        paths = list(paths)
        return cls([models.load(p, backend=backend) for p in paths], paths)


def load(path, backend=None):
    """Load an ensemble manifest written by :meth:`Ensemble.save` (or a directory holding ensemble.json).

    Raises:
        FileFormatError: not a manifest, a member missing, or a member file changed since it was saved.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "ensemble.json")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_MANIFEST + 1)
        if len(text) > MAX_MANIFEST:
            raise FileFormatError(f"{path}: not an ensemble manifest (larger than {MAX_MANIFEST:,} bytes)")
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise FileFormatError(f"{path}: not an ensemble manifest (invalid JSON: {getattr(e, 'msg', e)})") from None
    root = os.path.dirname(os.path.abspath(path))
    paths = []
    for i, member in enumerate(check_manifest(path, meta, FORMAT)):
        p = os.path.join(root, member["path"])
        if not os.path.isfile(p):
            raise FileFormatError(f"{path}: field 'members[{i}].path': member {member['path']} is missing")
        if _sha256(p) != member["sha256"]:
            raise FileFormatError(f"{path}: member {member['path']} changed since the ensemble was saved "
                                  "(SHA-256 mismatch)")
        paths.append(p)
    return Ensemble.from_files(paths, backend=backend)


def is_manifest(path):
    """True for a ``.json`` file or a directory holding ``ensemble.json``."""
    return path.endswith(".json") or os.path.isfile(os.path.join(path, "ensemble.json"))


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

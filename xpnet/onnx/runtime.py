"""Run an exported ONNX file through onnxruntime, with the predict/accuracy API of an xpnet Model."""

import json
import os

import numpy as np

from xpnet.errors import FileFormatError, ShapeError
from xpnet.onnx.deps import require


class OnnxModel:
    """An ONNX file on onnxruntime's CPU execution provider.

    Args:
        path: an ``.onnx`` file (one written by xpnet has :attr:`meta`; any single-input model runs).

    Attributes:
        meta: the file's ``metadata_props`` (``"xpnet.arch"``, ``"xpnet.sha256"``...), config decoded.
        input_shape: the input's shape, ``None`` where an axis is dynamic. dtype: the input's dtype.
    """

    def __init__(self, path):
        ort = require("onnxruntime")
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileFormatError(f"{path}: no such file")
        try:
            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's errors have no common base class
            raise FileFormatError(f"{path}: onnxruntime cannot load it: {' '.join(str(e).split())}") from None
        self.path = path
        (inp,) = self.session.get_inputs()
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.dtype = np.dtype({"tensor(float)": np.float32, "tensor(double)": np.float64,
                               "tensor(float16)": np.float16}.get(inp.type, np.float32))
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if "xpnet.config" in meta:
            meta["xpnet.config"] = json.loads(meta["xpnet.config"])
        self.meta = meta

    @property
    def arch(self):
        return self.meta.get("xpnet.arch")

    def predict(self, x):
        """Scores (N, classes) as NumPy; x (N, ...) is cast to the model's input dtype."""
        x = np.ascontiguousarray(np.asarray(x), dtype=self.dtype)
        want = self.input_shape[1:]
        flat = len(want) == 1 and x.ndim >= 2 and int(np.prod(x.shape[1:])) == want[0]
        if flat:
            x = x.reshape(len(x), -1)  # as Affine does: any (N, ...) with the right count per example
        ok = x.ndim == len(self.input_shape) and all(w is None or w == g for w, g in zip(self.input_shape, x.shape))
        if not ok:
            raise ShapeError(f"{self.path}: expected input of shape {_fmt(self.input_shape)}, got {tuple(x.shape)}")
        return self.session.run(None, {self.input_name: x})[0]

    def accuracy(self, x, t, batch_size=100):
        """Fraction of ``x`` classified as ``t`` (indices or one-hot), evaluated in batches."""
        from xpnet import backends
        from xpnet.models.selection import batched_accuracy

        return batched_accuracy(self.predict, backends.get("numpy"), x, t, batch_size)


def _fmt(shape):
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def compare(onnx_model, model, x, t=None, batch_size=1000):
    """Run ``x`` through both engines in batches; how far apart are their scores?

    Args:
        onnx_model: an :class:`OnnxModel`. model: an xpnet Model (any backend). x: (N, ...) inputs.
        t: optional labels (N,) or one-hot (N, classes); then both accuracies are reported too.

    Returns:
        dict with ``n``, ``argmax_agree`` (examples whose top class is the same), ``max_abs_diff``
        (largest |score difference| over all N x classes scores), ``max_abs_score`` (largest |score|
        from xpnet, for scale) and, with ``t``, ``accuracy_xpnet`` and ``accuracy_onnx``.
    """
    if int(batch_size) < 1:
        raise ValueError(f"compare: batch_size must be >= 1, got {batch_size!r}")
    if t is not None and len(t) != len(x):
        raise ShapeError(f"compare: {len(x)} inputs but {len(t)} labels")
    be = model.backend
    agree, diff, scale, correct = 0, 0.0, 0.0, np.zeros(2, dtype=np.int64)
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size]
        ours = be.asnumpy(model.predict(batch)).astype(np.float64)
        theirs = onnx_model.predict(batch).astype(np.float64)
        top = ours.argmax(axis=1), theirs.argmax(axis=1)
        agree += int((top[0] == top[1]).sum())
        diff = max(diff, float(np.abs(ours - theirs).max()))
        scale = max(scale, float(np.abs(ours).max()))
        if t is not None:
            labels = np.asarray(t[i : i + batch_size])
            labels = labels.argmax(axis=1) if labels.ndim != 1 else labels
            correct += [int((top[k] == labels).sum()) for k in (0, 1)]
    out = {"n": len(x), "argmax_agree": agree, "max_abs_diff": diff, "max_abs_score": scale}
    if t is not None:
        out.update(accuracy_xpnet=correct[0] / len(x), accuracy_onnx=correct[1] / len(x))
    return out

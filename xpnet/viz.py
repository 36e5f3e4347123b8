"""The book's Figure 8.2: the test images a model gets wrong, drawn with their true and predicted labels.

    idx, pred = misclassified(model, x_test, t_test)
    plot_misclassified(x_test[idx], t_test[idx], pred, "misclassified.png")

Drawing uses Matplotlib's Agg renderer through a bare ``Figure`` (no display, no pyplot state), and
the file is written atomically: a temporary file beside ``path``, then a rename.
"""

import errno
import math
import os

import numpy as np

from xpnet import backends
from xpnet.errors import ShapeError
from xpnet.fileio import atomic_write

FORMATS = ("png", "pdf", "svg")


def misclassified(model, x, t, batch_size=1000):
    """Find the examples ``model`` classifies wrongly.

    Args:
        model: an xpnet Model (inference mode is used: no dropout).
        x: inputs (N, ...) on any device, floats as the model expects.
        t: labels, class indices (N,) or one-hot (N, classes), on any device.
        batch_size: examples per forward pass.

    Returns:
        ``(indices, predictions)``: int64 NumPy arrays; ``indices`` ascending into ``x``, and
        ``predictions[i]`` the class predicted for ``x[indices[i]]``.

    Raises:
        ShapeError: ``x`` and ``t`` differ in length, or ``t`` is not (N,) or (N, classes).
        ValueError: ``batch_size`` is not a positive integer.
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"misclassified: batch_size must be a positive integer, got {batch_size!r}")
    labels = _labels(t, "t")
    if len(x) != len(labels):
        raise ShapeError(f"misclassified: {len(x)} inputs but {len(labels)} labels")
    preds = np.empty(len(labels), dtype=np.int64)
    for i in range(0, len(labels), batch_size):
        y = model.predict(x[i : i + batch_size]).argmax(axis=1)
        preds[i : i + batch_size] = backends.of(y).asnumpy(y)
    wrong = np.flatnonzero(preds != labels).astype(np.int64)
    return wrong, preds[wrong]


def plot_misclassified(x, t, pred, path, max_images=20, cols=5):
    """Draw the images whose prediction differs from the label, titled ``true/pred`` (the book's Figure 8.2).

    Args:
        x: images, (N, 1, H, W), (N, 3, H, W), (N, H, W) or flat (N, H*H) with square H, on any device.
            Either a whole test set or only the misclassified ones (see :func:`misclassified`).
        t: true labels, class indices (N,) or one-hot (N, classes).
        pred: predicted labels, like ``t``. Images with ``pred == t`` are not drawn.
        path: the file to write; ``.png`` (or ``.pdf``, ``.svg``); its directory must exist.
        max_images: draw at most this many, the first in order.
        cols: images per row.

    Returns:
        ``(drawn, total)``: images drawn and misclassified images in all. With none misclassified the
        file still gets written, saying so.

    Raises:
        FileNotFoundError: the directory of ``path`` does not exist. IsADirectoryError: ``path`` is one.
        ValueError: an unsupported extension, or ``max_images``/``cols`` not positive integers.
        ShapeError: ``x``, ``t`` and ``pred`` differ in length, or images of an unusable shape.
        OSError: the file could not be written (``path`` is left as it was).
    """
    fmt = _check_path(path)
    for name, value in (("max_images", max_images), ("cols", cols)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"plot_misclassified: {name} must be a positive integer, got {value!r}")
    x = x if hasattr(x, "shape") else np.asarray(x)
    t, pred = _labels(t, "t"), _labels(pred, "pred")
    if not len(x) == len(t) == len(pred):
        raise ShapeError(f"plot_misclassified: x, t and pred must have the same length, got {len(x)}, {len(t)} "
                         f"and {len(pred)}")
    wrong = np.flatnonzero(pred != t)
    shown = wrong[: int(max_images)]
    be = backends.of(x)
    images = _images(be.asnumpy(x[be.asarray(shown)]) if len(shown) else np.zeros((0, 1, 1)))
    fig = _figure(images, t[shown], pred[shown], int(cols), len(wrong), len(t))
    with atomic_write(path) as f:
        fig.savefig(f, format=fmt, dpi=100)
    return len(shown), len(wrong)


def _check_path(path):
    """Raise early, naming ``path``, unless it can be written; returns the file format."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"plot_misclassified: the directory {directory!r} does not exist",
                                path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "plot_misclassified: expected an image file name, got a directory",
                                path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise ValueError(f"plot_misclassified: path must end in {', '.join('.' + f for f in FORMATS)}, "
                         f"got {path!r}")
    return ext


def _labels(t, name):
    """Class indices (N,) as a NumPy int64 array from indices or one-hot rows, on any device."""
    t = backends.of(t).asnumpy(t) if hasattr(t, "shape") else np.asarray(t)
    if t.ndim == 2:
        t = t.argmax(axis=1)
    if t.ndim != 1:
        raise ShapeError(f"{name} must be class indices (N,) or one-hot (N, classes), got shape {t.shape}")
    return t.astype(np.int64)


def _images(x):
    """(N, H, W) gray or (N, H, W, 3) colour images from the layouts :func:`plot_misclassified` accepts."""
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ShapeError(f"plot_misclassified: flat images need a square number of pixels, got {x.shape[1]}")
        return x.reshape(len(x), side, side)
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 4 and x.shape[1] == 3:
        return x.transpose(0, 2, 3, 1)
    raise ShapeError(f"plot_misclassified: expected images (N, 1|3, H, W), (N, H, W) or (N, H*W), "
                     f"got shape {x.shape}")


def _figure(images, t, pred, cols, total, n):
    """A Matplotlib Figure (Agg, no pyplot) with one titled panel per image."""
    from matplotlib.figure import Figure

    count = len(images)
    cols = max(1, min(cols, count))
    rows = max(1, math.ceil(count / cols))
    fig = Figure(figsize=(1.5 * cols + 0.4, 1.6 * rows + 0.6))
    if count == 0:
        fig.text(0.5, 0.5, f"no misclassified images (of {n})", ha="center", va="center")
        return fig
    found = f"{total} misclassified" if total == n else f"{total} of {n} images misclassified"
    fig.suptitle(f"{found} (showing {count}); titles: true/predicted", fontsize=9)
    lo, hi = float(images.min()), float(images.max())
    for i, (img, true, guess) in enumerate(zip(images, t, pred)):
        ax = fig.add_subplot(rows, cols, i + 1)
        if img.ndim == 2:
            ax.imshow(img, cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
        else:
            ax.imshow(np.clip((img - lo) / ((hi - lo) or 1.0), 0.0, 1.0), interpolation="nearest")
        ax.set_title(f"{true}/{guess}", fontsize=9, color="tab:red")
        ax.axis("off")
    fig.tight_layout()
    return fig

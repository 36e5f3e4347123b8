"""Tile images into one picture file (a GAN's samples; segmentation inputs, labels and predictions).

Pixels are written as they are, one image pixel per file pixel (times ``zoom``), through
``matplotlib.image.imsave``: no figure, no pyplot state. The file is written atomically.
"""

import os

import numpy as np
from matplotlib import image as mpl_image

from xpnet import backends
from xpnet.errors import ShapeError
from xpnet.fileio import atomic_write

# Segmentation colours: ten distinct hues for the digits 0-9, black for class 10 (the background).
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 0, 0],
], dtype=np.float64) / 255


def colorize(labels, palette=PALETTE):
    """(N, H, W) class indices -> (N, H, W, 3) RGB in [0, 1]."""
    labels = np.asarray(backends.of(labels).asnumpy(labels) if hasattr(labels, "shape") else labels)
    if labels.min() < 0 or labels.max() >= len(palette):
        raise ShapeError(f"colorize: classes must be in [0, {len(palette)}), got [{labels.min()}, {labels.max()}]")
    return palette[labels]


def to_rgb(images):
    """(N, H, W), (N, 1, H, W) or (N, 3, H, W) values in [0, 1], or (N, H, W, 3) RGB -> (N, H, W, 3)."""
    a = np.asarray(backends.of(images).asnumpy(images) if hasattr(images, "shape") else images, np.float64)
    if a.ndim == 4 and a.shape[-1] == 3 and a.shape[1] not in (1, 3):
        return np.clip(a, 0, 1)
    if a.ndim == 4 and a.shape[1] in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    elif a.ndim == 3:
        a = a[..., None]
    else:
        raise ShapeError(f"to_rgb: expected (N, H, W), (N, C, H, W) or (N, H, W, 3) images, got shape {a.shape}")
    return np.clip(np.broadcast_to(a, a.shape[:3] + (3,)), 0, 1)


def tile(images, cols, gap=2, background=1.0):
    """(N, H, W, 3) -> one (rows*(H+gap)-gap, cols*(W+gap)-gap, 3) array, row by row."""
    N, H, W, _ = images.shape
    rows = -(-N // cols)
    out = np.full((rows * (H + gap) - gap, cols * (W + gap) - gap, 3), background)
    for k in range(N):
        r, c = divmod(k, cols)
        out[r * (H + gap): r * (H + gap) + H, c * (W + gap): c * (W + gap) + W] = images[k]
    return out


def save_grid(images, path, cols, zoom=1):
    """Write ``images`` (anything :func:`to_rgb` takes) tiled ``cols`` to a row as a PNG at ``path``.

    Raises:
        ValueError: ``path`` does not end in ``.png`` or ``cols``/``zoom`` are not positive.
        FileNotFoundError: its directory does not exist.
    """
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"save_grid: path must end in .png, got {path!r}")
    if int(cols) < 1 or int(zoom) < 1:
        raise ValueError(f"save_grid: cols and zoom must be positive, got {cols!r} and {zoom!r}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise FileNotFoundError(f"save_grid: the directory of {path!r} does not exist")
    grid = tile(to_rgb(images), int(cols))
    grid = grid.repeat(int(zoom), axis=0).repeat(int(zoom), axis=1)
    with atomic_write(path) as f:
        mpl_image.imsave(f, grid, format="png")


def save_segmentation(x, t, pred, path, zoom=2):
    """One row per example: the input, its true labels and the predicted labels (colours: :data:`PALETTE`)."""
    x = to_rgb(x)
    t, pred = colorize(t), colorize(pred)
    if not len(x) == len(t) == len(pred):
        raise ShapeError(f"save_segmentation: x, t and pred differ in length: {len(x)}, {len(t)}, {len(pred)}")
    rows = np.stack([x, t, pred], axis=1).reshape(-1, *x.shape[1:])
    save_grid(rows, path, 3, zoom)

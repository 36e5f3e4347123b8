"""Datasets for the CLI: ``mnist`` or a directory of IDX files, as (N, 1, H, W) float32 in [0, 1]."""

import os

import numpy as np

from xpnet.datasets import load_idx_dir, load_mnist
from xpnet.errors import DataError


def load_dataset(name, flatten=False):
    """Return ``((x_train, t_train), (x_test, t_test), num_classes)``."""
    if name == "mnist":
        train, test = load_mnist(normalize=True, flatten=flatten)
        return train, test, 10
    if not os.path.isdir(name):
        raise DataError(f"--dataset must be 'mnist' or a directory of IDX files; {name!r} is neither")
    (xa, ta), (xb, tb) = load_idx_dir(name)
    for split, x in (("train", xa), ("t10k", xb)):
        if len(x) == 0:
            raise DataError(f"{name}: the {split} split is empty")
    if xa.shape[1:] != xb.shape[1:]:
        raise DataError(f"{name}: train images are {xa.shape[1]}x{xa.shape[2]} but t10k images are "
                        f"{xb.shape[1]}x{xb.shape[2]}; both splits must have one size")

    def prep(x):
        x = x.astype(np.float32) / np.float32(255.0)
        return x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *x.shape[1:])

    classes = check_classes(name, ta, tb)
    return (prep(xa), ta.astype(np.int64)), (prep(xb), tb.astype(np.int64)), classes


def check_classes(name, train_labels, test_labels):
    """The number of classes K of a dataset whose labels must be 0..K-1 (K from the training labels).

    Every class must occur in training, and none rarely enough (under 1/1000 of the mean count) to be a
    stray label, and the test labels must be classes of the training set: otherwise a label 10 or 255
    would silently train an 11- or 256-class model.
    """
    counts = np.bincount(train_labels.astype(np.int64))
    classes = len(counts)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise DataError(f"{name}: train labels go up to {classes - 1} but {len(missing)} of the classes below "
                        f"never occur (e.g. {', '.join(map(str, missing[:5]))}); labels must be 0..K-1 with every "
                        "class present")
    rare = np.flatnonzero(counts * 1000 < counts.mean())
    if len(rare):
        k = int(rare[0])
        raise DataError(f"{name}: train label {k} occurs {counts[k]} time(s) against a mean of {counts.mean():.0f} "
                        "per class: a stray label? labels must be 0..K-1 with every class present")
    check_labels_fit(f"{name}: t10k", test_labels, classes, "the training labels' classes")
    return classes


def check_labels_fit(what, labels, classes, whose):
    """Raise DataError unless every integer label is in [0, classes)."""
    if labels.ndim == 1 and labels.dtype.kind in "iu" and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= classes:
            raise DataError(f"{what} labels span {low}..{high}, outside {whose} 0..{classes - 1}")


def limit(pair, n):
    """The first ``n`` examples of ``(x, t)`` (all when n is None)."""
    if n is None:
        return pair
    if n < 1:
        raise ValueError(f"--limit must be >= 1, got {n}")
    return pair[0][:n], pair[1][:n]

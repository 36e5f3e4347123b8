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

    classes = int(max(ta.max(), tb.max())) + 1
    return (prep(xa), ta.astype(np.int64)), (prep(xb), tb.astype(np.int64)), classes


def limit(pair, n):
    """The first ``n`` examples of ``(x, t)`` (all when n is None)."""
    if n is None:
        return pair
    if n < 1:
        raise ValueError(f"--limit must be >= 1, got {n}")
    return pair[0][:n], pair[1][:n]

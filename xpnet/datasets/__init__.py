"""Datasets: MNIST (cached and verified), IDX files, and a safe pickle loader."""

from xpnet.datasets.idx import load_idx_dir
from xpnet.datasets.mnist import load_mnist, mnist_cache_dir
from xpnet.datasets.safe_pickle import safe_load_pickle

__all__ = ["load_idx_dir", "load_mnist", "mnist_cache_dir", "safe_load_pickle"]

"""Import the book's trained DeepConvNet parameters (``deep_convnet_params.pkl``, chapter 8)."""

import os

import numpy as np

from xpnet.datasets.safe_pickle import safe_load_pickle
from xpnet.errors import FileFormatError, UnsafePickleError

BOOK_SHAPES = {"W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3), "W4": (32, 32, 3, 3),
               "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3), "W7": (1024, 50), "W8": (50, 10)}
_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2"]


def read_book_params(path):
    """Read the book's pickle with the restricted unpickler and check every shape."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            params = safe_load_pickle(f)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except OSError as e:
        raise FileFormatError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # a damaged pickle fails in many ways (EOFError, UnpicklingError, ...)
        raise FileFormatError(f"{path}: not a readable pickle (truncated or corrupted?): "
                              f"{type(e).__name__}: {e}") from None
    if not isinstance(params, dict):
        raise FileFormatError(f"{path}: expected a dict of W1..W8, b1..b8, got {type(params).__name__}")
    for i in range(1, 9):
        for key, shape in ((f"W{i}", BOOK_SHAPES[f"W{i}"]), (f"b{i}", (BOOK_SHAPES[f"W{i}"][0 if i <= 6 else 1],))):
            a = params.get(key)
            if not isinstance(a, np.ndarray) or a.shape != shape:
                got = a.shape if isinstance(a, np.ndarray) else type(a).__name__
                raise FileFormatError(f"{path}: '{key}' should be an array of shape {shape}, got {got}")
    return params


def load_book_params(path, dropout_ratio=0.5, dtype="float32", backend=None):
    """A DeepConvNet whose predictions equal the book's code with its trained parameters.

    The book's Dropout multiplies by (1 - ratio) at inference after the first affine's ReLU and after
    the last affine; xpnet's inverted dropout is the identity there, so both factors are folded into
    the last affine layer: W8 * (1 - r)^2, b8 * (1 - r).
    """
    from xpnet.models import DeepConvNet

    params = read_book_params(path)
    keep = 1.0 - dropout_ratio
    state = {}
    for i, name in enumerate(_LAYERS, start=1):
        W, b = np.asarray(params[f"W{i}"], np.float64), np.asarray(params[f"b{i}"], np.float64)
        if name == "fc2":
            W, b = W * keep * keep, b * keep
        state[f"{name}.W"], state[f"{name}.b"] = W, b
    model = DeepConvNet(dropout_ratio=dropout_ratio, dtype=dtype, backend=backend)
    return model.load_state_dict(state)

"""A restricted unpickler that rebuilds NumPy arrays and runs nothing else.

Pickles found on the internet (such as the classic ``mnist.pkl.gz``) are
untrusted: an ordinary ``pickle.load`` would call any global they name. This
unpickler resolves only the handful of NumPy globals that array and scalar
reconstruction needs; every other global, and every persistent id, is refused
with :class:`~xpnet.errors.UnsafePickleError` before anything is called.
"""

import codecs
import importlib
import pickle

import numpy as np

from xpnet.errors import UnsafePickleError


def _latin1_encode(text, encoding):
    """Stand-in for ``_codecs.encode``: protocols 0-2 store ``bytes`` this way, always latin1."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode({encoding!r}): only 'latin1' is allowed")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args):
    """Stand-in for ``bytes``: protocols 0-2 store ``b''`` as a call to ``bytes()`` with no arguments."""
    if args:
        raise UnsafePickleError("refusing bytes(...) with arguments: only bytes() is allowed")
    return b""


def _numpy_core(submodule, name):
    """Return ``name`` from ``numpy._core.<submodule>`` (NumPy 2), else ``numpy.core.<submodule>``."""
    for package in ("numpy._core", "numpy.core"):
        try:
            module = importlib.import_module(f"{package}.{submodule}")
        except ImportError:
            continue
        return getattr(module, name)
    raise UnsafePickleError(f"this NumPy has no {submodule}.{name}")


# (module, name) as written in the pickle -> a function returning the object to use.
_ALLOWED = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("builtins", "bytes"): lambda: _empty_bytes,
    ("__builtin__", "bytes"): lambda: _empty_bytes,
}
for _package in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_package}.multiarray", "_reconstruct")] = lambda: _numpy_core("multiarray", "_reconstruct")
    _ALLOWED[(f"{_package}.multiarray", "scalar")] = lambda: _numpy_core("multiarray", "scalar")
    _ALLOWED[(f"{_package}.numeric", "_frombuffer")] = lambda: _numpy_core("numeric", "_frombuffer")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An ``Unpickler`` whose globals are limited to :data:`_ALLOWED`."""

    def find_class(self, module, name):
        """Resolve an allowed NumPy global, or refuse with :class:`UnsafePickleError`."""
        resolve = _ALLOWED.get((module, name))
        if resolve is None:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: only NumPy array data is allowed"
            )
        return resolve()

    def persistent_load(self, pid):
        """Refuse every persistent id: plain array pickles never contain one."""
        raise UnsafePickleError(f"refusing to unpickle persistent id {pid!r}")


def safe_load_pickle(fileobj, encoding="latin1"):
    """Load a pickle of NumPy arrays in plain containers without running foreign code.

    Args:
        fileobj: a binary file object positioned at the start of the pickle.
        encoding: how to decode Python 2 ``str`` objects; ``"latin1"`` is what
            NumPy arrays pickled under Python 2 need.

    Returns:
        The unpickled object: arrays, NumPy scalars, dtypes, and built-in
        containers and scalars (dict, list, tuple, str, int, float, ...).

    Raises:
        UnsafePickleError: the pickle names a global other than NumPy's array
            reconstruction helpers, or a persistent id. Nothing it asked for runs.
    """
    return _NumpyOnlyUnpickler(fileobj, encoding=encoding).load()

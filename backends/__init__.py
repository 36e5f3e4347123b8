"""Array backends: one object per device kind with the same names.

Select with the environment variable ``XPNET_BACKEND`` (read at import: ``numpy``/``cpu``,
``cuda``/``cupy``/``gpu``, or ``auto``), or at run time with :func:`use`. This package is the only
place in xpnet that imports CuPy.
"""

import os

from xpnet.backends.base import Backend, CPUTimer
from xpnet.backends.numpy_backend import NumpyBackend

__all__ = ["Backend", "CPUTimer", "NAMES", "available", "current", "get", "may_use_gpu", "of", "resolve_name",
           "select_device", "unavailable_reason", "use"]

_ALIASES = {"numpy": "numpy", "cpu": "numpy", "cuda": "cuda", "cupy": "cuda", "gpu": "cuda", "auto": "auto"}
NAMES = tuple(_ALIASES)

_instances = {}


def resolve_name(name):
    """Map a backend name or alias to ``"numpy"``, ``"cuda"`` or ``"auto"``; ValueError if unknown."""
    if isinstance(name, Backend):
        return name.name
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown backend {name!r}; valid names: {', '.join(NAMES)}")
    return _ALIASES[key]


def may_use_gpu(name):
    """True when the backend ``name`` (an alias or ``"auto"``) is, or may turn out to be, a GPU."""
    return resolve_name(name) != "numpy"


def get(name):
    """Return the backend object for ``name`` (an alias, ``"auto"`` or a Backend), creating it once.

    Raises:
        ValueError: unknown name.
        BackendError: ``cuda`` asked for without CuPy or without a usable device.
    """
    if isinstance(name, Backend):
        return name
    kind = resolve_name(name)
    if kind == "auto":
        kind = "cuda" if _cuda_usable() else "numpy"
    if kind not in _instances:
        if kind == "numpy":
            _instances[kind] = NumpyBackend()
        else:
            from xpnet.backends.cuda_backend import CudaBackend

            _instances[kind] = CudaBackend()
    return _instances[kind]


def unavailable_reason(name):
    """None when backend ``name`` can run here, else why not, in one line (what is missing, how to fix it)."""
    try:
        get(name)
    except Exception as e:
        return str(e)
    return None


def _cuda_usable():
    return unavailable_reason("cuda") is None


def select_device(index):
    """Make CUDA device ``index % count`` current before the CUDA backend starts (one GPU per rank).

    Returns the device id, or None where CuPy or a device is missing (asking for ``cuda`` then says why).
    """
    from xpnet.backends.cuda_collectives import select_device as select

    return select(index)


def available():
    """Names of the backends usable on this machine, ``"numpy"`` first."""
    return ["numpy"] + (["cuda"] if _cuda_usable() else [])


# Read at import; checked when first used, so a bad value gives a clear ValueError from the first
# xpnet call (or one line from the CLI) rather than breaking ``import xpnet`` itself.
_requested = os.environ.get("XPNET_BACKEND", "") or "numpy"
_current = None


def current():
    """The backend new models and data go to (from ``XPNET_BACKEND`` until :func:`use` changes it).

    Raises:
        ValueError: ``XPNET_BACKEND`` names no backend.
        BackendError: it names ``cuda`` and CUDA is unusable here.
    """
    global _current
    if _current is None:
        try:
            resolve_name(_requested)
        except ValueError:
            raise ValueError(f"XPNET_BACKEND={_requested!r} is not a backend; valid names: "
                             f"{', '.join(NAMES)}") from None
        _current = get(_requested)
    return _current


class use:
    """Switch the current backend; also a context manager that switches back on exit.

    Example:
        >>> with xpnet.backends.use("numpy"):
        ...     model = DeepConvNet()
    """

    def __init__(self, name):
        global _current
        backend = get(name)
        self._previous = _current
        self.backend = backend
        _current = backend

    def __enter__(self):
        return self.backend

    def __exit__(self, *exc):
        global _current
        _current = self._previous
        return False


def of(array):
    """The backend that owns ``array`` (NumPy arrays and scalars: ``numpy``)."""
    module = type(array).__module__
    if module.startswith("cupy"):
        return get("cuda")
    return get("numpy")

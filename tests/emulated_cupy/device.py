"""The emulated device as xpnet's ``cuda`` backend, for a block of code (tests, launch counts)."""

import contextlib
import sys

_backend = []


def backend():
    """xpnet's CudaBackend over the emulated module (made once; compiled kernels are cached on disk)."""
    if not _backend:
        import importlib

        from xpnet.backends.cuda_backend import CudaBackend

        _backend.append(CudaBackend(cupy=importlib.import_module(__package__)))
    return _backend[0]


@contextlib.contextmanager
def as_cuda():
    """Within the block, xpnet's ``cuda`` backend is the emulated device and ``import cupy`` gives it.

    Yields the backend. What was there before (a real CuPy module, a cached backend) comes back after.
    """
    from xpnet import backends

    be = backend()
    saved = backends._instances.get("cuda"), sys.modules.get("cupy")
    backends._instances["cuda"], sys.modules["cupy"] = be, be.xp
    try:
        yield be
    finally:
        for store, key, value in ((backends._instances, "cuda", saved[0]), (sys.modules, "cupy", saved[1])):
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value

"""The package's one extension module, xpnet.backends._native (direct_conv.c, cpu_kernels.c, cpu_leaky_relu.c,
cpu_batchnorm.c), opened for ctypes once."""

import ctypes

_LIB = None
_WHY = None


def library():
    """``(lib, None)`` with the extension's ctypes library, or ``(None, why)`` where it is not built."""
    global _LIB, _WHY
    if _LIB is None and _WHY is None:
        try:
            from xpnet.backends import _native
        except ImportError as e:
            _WHY = f"the compiled kernels are not built ({e}); reinstall with a C compiler: pip install -e ."
        else:
            _LIB = ctypes.CDLL(_native.__file__)
    return _LIB, _WHY

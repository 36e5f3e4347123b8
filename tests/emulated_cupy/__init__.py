"""An emulated CUDA device with CuPy 14's API, for running xpnet's CUDA backend in CI without a GPU.

Strict where CuPy is strict: every public name here exists in the real ``cupy`` 14 module
(``tests/test_emulated_cupy.py`` checks it against the installed CuPy), device arrays never become host
arrays implicitly (``numpy.asarray``, NumPy functions and mixing with NumPy arrays raise TypeError), and
leaving the device counts a host sync. Arrays are NumPy arrays inside; xpnet's own kernels
(``ElementwiseKernel``, ``RawKernel``) run as their CUDA C compiled for the host (``kernels.py``).
``counters`` counts launches, allocations, syncs and host-to-device copies (``counters.counting()``).

Use: ``with emulated_cupy.device.as_cuda() as be:`` makes xpnet's ``cuda`` backend a
``CudaBackend(cupy=emulated_cupy)`` for the block (``tests/conftest.py`` does so for the cuda cases when no
GPU is usable). Outside such a block nothing in the process is changed.
"""

import numpy as _np

from . import counters, cuda, random  # noqa: F401
from .array import ndarray  # noqa: F401
from .functions import *  # noqa: F401,F403
from .functions import ROUTINES as _ROUTINES
from .functions import (  # noqa: F401
    array,
    asarray,
    ascontiguousarray,
    asnumpy,
    copyto,
    empty,
    empty_like,
    full,
    get_array_module,
    may_share_memory,
    ones,
    shares_memory,
    zeros,
)
from .kernels import ElementwiseKernel, RawKernel  # noqa: F401
from .ufuncs import *  # noqa: F401,F403
from .ufuncs import NAMES as _UFUNCS
from .ufuncs import ufunc  # noqa: F401

__version__ = "14.2.0"

_DTYPES = ("bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 intp uintp float16 float32 float64 "
           "complex64 complex128 byte short intc int_ longlong ubyte ushort uintc ulonglong half single double "
           "csingle cdouble number integer signedinteger unsignedinteger floating complexfloating inexact "
           "generic dtype finfo iinfo result_type can_cast promote_types issubdtype isscalar min_scalar_type "
           "newaxis inf nan pi e").split()
for _name in _DTYPES:
    globals()[_name] = getattr(_np, _name)
bool = _np.bool_  # noqa: A001 (cupy.bool is numpy.bool, as in NumPy 2)


def get_default_memory_pool():
    return cuda._POOL


def get_default_pinned_memory_pool():
    return cuda.PinnedMemoryPool()


def is_available():
    return True


PUBLIC = sorted(set(_ROUTINES) | set(_UFUNCS) | set(_DTYPES) | {
    "ndarray", "ufunc", "array", "asarray", "ascontiguousarray", "asnumpy", "copyto", "empty", "empty_like",
    "full", "get_array_module", "may_share_memory", "ones", "shares_memory", "zeros", "ElementwiseKernel",
    "RawKernel", "get_default_memory_pool", "get_default_pinned_memory_pool", "is_available", "bool",
    "cuda", "random", "__version__"})

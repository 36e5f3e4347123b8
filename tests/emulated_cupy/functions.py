"""CuPy's array functions over NumPy's: device arrays in and out, host arrays refused.

Each routine counts one launch and one allocation per new array it returns (see ``counters``);
results that are views of an input count nothing.
"""

import builtins

import numpy as np

from . import counters
from .array import allocated, ndarray, unwrap, wrap

# Routines whose result is new device data computed by a kernel (or a view, detected per call).
ROUTINES = (
    "sum mean max min amax amin argmax argmin prod std var all any cumsum cumprod count_nonzero nansum "
    "nanmax nanmin clip round around where dot vdot inner outer tensordot einsum trace nonzero argwhere "
    "concatenate stack hstack vstack broadcast_to broadcast_arrays pad take take_along_axis "
    "put_along_axis squeeze expand_dims moveaxis swapaxes transpose reshape ravel flip fliplr flipud "
    "roll tile repeat split array_split sort argsort unique diff allclose isclose array_equal "
    "einsum conj trace bincount searchsorted cross linspace logspace arange eye identity "
    "tril triu diag diagonal meshgrid indices atleast_1d atleast_2d atleast_3d rot90 average median "
    "percentile quantile histogram zeros_like ones_like full_like shape ndim size"
).split()

_NO_LAUNCH = {"shape", "ndim", "size"}
_SYNCING = {"nonzero", "argwhere", "unique", "bincount"}  # their output size is known only on the device


def _routine(name):
    np_func = getattr(np, name)

    def routine(*args, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            if not isinstance(out, ndarray):
                raise TypeError(f"Output argument must be a cupy array, got {type(out)}")
        args, kwargs = unwrap(list(args)), {k: unwrap(v) for k, v in kwargs.items()}
        inputs = [a for a in _flat(args) + _flat(list(kwargs.values())) if isinstance(a, np.ndarray)]
        result = np_func(*args, **kwargs)
        if name in _SYNCING or (name == "where" and len(args) == 1):
            counters.sync()
        if name in _NO_LAUNCH:
            return result
        if out is not None:
            counters.launch(name, args, kwargs)
            return out
        if isinstance(result, list):
            return [wrap(r, inputs, name) for r in result]
        return wrap(result, inputs, name)

    routine.__name__ = name
    return routine


def _flat(values):
    flat = []
    for v in values:
        if isinstance(v, (list, tuple)):
            flat.extend(_flat(v))
        else:
            flat.append(v)
    return flat


for _name in ROUTINES:
    globals()[_name] = _routine(_name)


def copyto(dst, src, casting="same_kind", where=None):
    if not isinstance(dst, ndarray):
        raise TypeError(f"copyto expects a cupy array as dst, got {type(dst)}")
    counters.launch("copyto", (dst, src), {"where": where})
    np.copyto(dst._a, unwrap(src), casting=casting, where=True if where is None else unwrap(where))


# -- creation ------------------------------------------------------------------------------------
def empty(shape, dtype=float, order="C"):
    return allocated(np.empty(shape, dtype=dtype, order=order))


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    return allocated(np.empty_like(unwrap(a), dtype=dtype, order=order, shape=shape))


def _filled(np_func):
    def create(shape, *args, **kwargs):
        counters.launch("fill")
        return allocated(np_func(shape, *args, **kwargs))

    create.__name__ = np_func.__name__
    return create


zeros, ones, full = _filled(np.zeros), _filled(np.ones), _filled(np.full)


def _from_host(obj, dtype, copy, order):
    """Host data (a NumPy array, list or scalar) copied to a new device array; a list of device arrays is
    stacked on the device, as CuPy does."""
    if isinstance(obj, (list, tuple)) and builtins.any(isinstance(v, ndarray) for v in _flat(obj)):
        return wrap(np.array(unwrap(obj), dtype=dtype, order=order))
    counters.h2d()
    return allocated(np.array(obj, dtype=dtype, order=order))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    if isinstance(obj, ndarray):
        if not copy and (dtype is None or np.dtype(dtype) == obj.dtype):
            return obj
        return wrap(np.array(obj._a, dtype=dtype, order=order, ndmin=ndmin))
    return _from_host(obj, dtype, copy, "C" if order in ("K", "A") else order)


def asarray(a, dtype=None, order=None, *, blocking=False):
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return a
        return wrap(a._a.astype(dtype), launched="astype")
    return _from_host(a, dtype, True, order or "C")


def ascontiguousarray(a, dtype=None):
    if isinstance(a, ndarray):
        if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        return wrap(np.ascontiguousarray(a._a, dtype=dtype))
    return _from_host(a, dtype, True, "C")


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """The host copy of ``a`` (a sync); host arrays and scalars are returned as NumPy arrays."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    import importlib

    if builtins.any(isinstance(a, ndarray) for a in args):
        return importlib.import_module(__package__)
    return np


def shares_memory(a, b, max_work=None):
    return np.shares_memory(unwrap(a), unwrap(b))


def may_share_memory(a, b, max_work=None):
    return np.may_share_memory(unwrap(a), unwrap(b))

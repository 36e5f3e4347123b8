"""What the emulated device counts: kernel launches, device allocations, host syncs, host-to-device copies.

A *launch* is one CuPy call that runs device code: a ufunc, a reduction, a copy or cast, a matrix
product (one cuBLAS call), a fill, an ElementwiseKernel/RawKernel call. Views (reshape, transpose,
basic slicing) launch nothing. CuPy routines made of several kernels (``pad``, ``std``, fancy
indexing) count as one: the counts are a lower bound on what CuPy issues.
An *allocation* is one new device array (a request to CuPy's memory pool, which may or may not reach
``cudaMalloc``). A *sync* is anything that makes the host wait for the device: ``.get()``,
``asnumpy``, ``int()``/``float()``/``bool()``/``.item()``/``.tolist()``/printing a device array, and
stream, event or device ``synchronize``.
:func:`recording` also keeps each launch's arguments: device arrays by address, shape, strides and
dtype, scalars by type and value (what a CUDA graph would bake into the launch); a launch that makes
a new array is recorded by name only (its output is a new allocation, which a steady step has none of).
"""

import collections
import contextlib
import dataclasses

import numpy as np


@dataclasses.dataclass
class Counts:
    launches: int = 0
    allocations: int = 0
    syncs: int = 0
    h2d: int = 0
    kernels: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # launches by name

    def __sub__(self, other):
        diff = {f.name: getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self)}
        diff["kernels"] = +diff["kernels"]  # drop names that launched nothing in between
        return Counts(**diff)

    def copy(self):
        return dataclasses.replace(self, kernels=collections.Counter(self.kernels))

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"kernels": dict(self.kernels)}


TOTAL = Counts()
_RECORDERS = []


def launch(name, args=(), kwargs=None):
    """One launch of the kernel (or CuPy routine) ``name`` with ``args`` and ``kwargs`` (for :func:`recording`)."""
    TOTAL.launches += 1
    TOTAL.kernels[name] += 1
    if _RECORDERS:
        call = (name, describe(tuple(args)), describe(dict(kwargs or {})))
        for calls in _RECORDERS:
            calls.append(call)


def describe(value):
    """A launch argument as a comparable value: an array (emulated or the NumPy one under it) by its data
    address, shape, strides and dtype; containers item by item; anything else by type and value."""
    a = getattr(value, "_a", value)
    if isinstance(a, np.ndarray):
        return ("array", a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
    if isinstance(value, (list, tuple)):
        return tuple(describe(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, describe(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def allocation(n=1):
    TOTAL.allocations += n


def sync():
    TOTAL.syncs += 1


def h2d():
    TOTAL.h2d += 1


def snapshot():
    """The running totals since the process started (a copy)."""
    return TOTAL.copy()


@contextlib.contextmanager
def recording():
    """``with recording() as calls: ...`` then ``calls``: each launch in the block as ``(name, args, kwargs)``
    (:func:`describe`), in order."""
    calls = []
    _RECORDERS.append(calls)
    try:
        yield calls
    finally:
        _RECORDERS.remove(calls)


@contextlib.contextmanager
def counting():
    """``with counting() as c: ...`` then ``c.launches`` etc.: what the block did on the device."""
    start = snapshot()
    result = Counts()
    try:
        yield result
    finally:
        for k, v in vars(snapshot() - start).items():
            setattr(result, k, v)

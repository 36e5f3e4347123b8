"""What the emulated device counts: kernel launches, device allocations, host syncs, host-to-device copies.

A *launch* is one CuPy call that runs device code: a ufunc, a reduction, a copy or cast, a matrix
product (one cuBLAS call), a fill, an ElementwiseKernel/RawKernel call. Views (reshape, transpose,
basic slicing) launch nothing. CuPy routines made of several kernels (``pad``, ``std``, fancy
indexing) count as one: the counts are a lower bound on what CuPy issues.
An *allocation* is one new device array (a request to CuPy's memory pool, which may or may not reach
``cudaMalloc``). A *sync* is anything that makes the host wait for the device: ``.get()``,
``asnumpy``, ``int()``/``float()``/``bool()``/``.item()``/``.tolist()``/printing a device array, and
stream, event or device ``synchronize``.
"""

import collections
import contextlib
import dataclasses


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


def launch(name):
    """One launch of the kernel (or CuPy routine) ``name``."""
    TOTAL.launches += 1
    TOTAL.kernels[name] += 1


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
def counting():
    """``with counting() as c: ...`` then ``c.launches`` etc.: what the block did on the device."""
    start = snapshot()
    result = Counts()
    try:
        yield result
    finally:
        for k, v in vars(snapshot() - start).items():
            setattr(result, k, v)

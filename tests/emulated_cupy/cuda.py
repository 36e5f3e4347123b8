"""``cupy.cuda`` for the emulated device: one device, one stream, events, a memory pool with a limit."""

import time as _time
import types as _types
import weakref as _weakref

from . import counters as _counters


class _CUDARuntimeError(RuntimeError):
    pass


class _OutOfMemoryError(MemoryError):
    """CuPy's error for a failed device allocation (raised here when the pool's limit is passed)."""

    def __init__(self, size, total, limit=0):
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes, "
                         f"limit set to: {limit:,} bytes).")


class MemoryPool:
    """Counts the bytes of live device arrays; ``set_limit`` makes larger totals fail as on a full GPU."""

    def __init__(self):
        self._used = 0
        self._limit = 0

    def _allocate(self, a):
        if self._limit and self._used + a.nbytes > self._limit:
            raise _OutOfMemoryError(a.nbytes, self._used, self._limit)
        self._used += a.nbytes
        _weakref.finalize(a, self._free, a.nbytes)

    def _free(self, nbytes):
        self._used -= nbytes

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return self._used

    def free_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def set_limit(self, size=None, fraction=None):
        self._limit = int(size or 0)

    def get_limit(self):
        return self._limit


class PinnedMemoryPool:
    def free_all_blocks(self):
        pass


_POOL = MemoryPool()
_TOTAL_MEMORY = 16 * 2**30


def _props(device=0):
    return {"name": b"xpnet emulated CUDA device", "totalGlobalMem": _TOTAL_MEMORY, "major": 9, "minor": 0,
            "multiProcessorCount": 4}


def _device_synchronize():
    _counters.sync()


runtime = _types.SimpleNamespace(
    CUDARuntimeError=_CUDARuntimeError,
    getDeviceCount=lambda: 1,
    getDevice=lambda: 0,
    getDeviceProperties=_props,
    deviceSynchronize=_device_synchronize,
    memGetInfo=lambda: (_TOTAL_MEMORY - _POOL.used_bytes(), _TOTAL_MEMORY),
    runtimeGetVersion=lambda: 12090,
    driverGetVersion=lambda: 12090,
    is_hip=False,
)
memory = _types.SimpleNamespace(OutOfMemoryError=_OutOfMemoryError, MemoryPool=MemoryPool)
_CUDARuntimeError.__name__ = _CUDARuntimeError.__qualname__ = "CUDARuntimeError"
_OutOfMemoryError.__name__ = _OutOfMemoryError.__qualname__ = "OutOfMemoryError"


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise _CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    compute_capability = "90"

    def use(self):
        pass

    def synchronize(self):
        _counters.sync()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Stream:
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0

    def synchronize(self):
        _counters.sync()

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_STREAM = Stream()


def get_current_stream(device_id=-1):
    return _STREAM


class Event:
    """Records host time: kernels run as they are called, so the host clock is the device clock here."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._t = None

    def record(self, stream=None):
        self._t = _time.perf_counter()

    def synchronize(self):
        _counters.sync()

    @property
    def done(self):
        return True


def get_elapsed_time(start_event, end_event):
    return (end_event._t - start_event._t) * 1e3


def get_device_id():
    return 0


def is_available():
    return True

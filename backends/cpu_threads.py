"""Both cores for the NumPy backend: a batch split over worker threads, each running BLAS on one thread.

NumPy runs copies and element-wise work on one core, and OpenBLAS's own threads help only inside a
GEMM. Convolution is mostly copies (im2col, col2im) between GEMMs, so the NumPy backend instead splits
the batch into one slice per core and runs a whole slice (copies + GEMMs) in each thread: NumPy and
OpenBLAS release the GIL, so the slices run at the same time.

OpenBLAS is then set to ONE thread for the whole process, when the splitter is first used: its worker
threads spin for a while after every multi-threaded GEMM, and a spinning worker takes the core one of
our slices needs. Measured on the 2-core machine (DeepConvNet training step, batch 100): 80 ms without
the split, 121 ms with the split but OpenBLAS switched back to 2 threads between regions, 65 ms with the
split and OpenBLAS kept at one thread. Other NumPy matrix products in the process then use one core too.

``XPNET_NUM_THREADS`` sets the number of worker threads (default: OpenBLAS's own thread count, so
``OPENBLAS_NUM_THREADS=1`` keeps a process on one core, capped by the usable cores); 1 turns the split
off and leaves OpenBLAS alone. Without a BLAS whose thread count can be set (OpenBLAS), the split is off.
"""

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")


def find_openblas():
    """``(set_num_threads, get_num_threads)`` of the OpenBLAS NumPy loaded, or None."""
    import numpy  # noqa: F401 - load NumPy's BLAS before looking for it

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        getter = next((getattr(lib, g) for g in _GETTERS if hasattr(lib, g)), None)
        if setter is not None and getter is not None:
            setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
            return setter, getter
    return None


def usable_cores():
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _configured_threads(blas):
    """XPNET_NUM_THREADS, else OpenBLAS's own thread count (OPENBLAS_NUM_THREADS...) capped by the cores."""
    text = os.environ.get("XPNET_NUM_THREADS", "").strip()
    if not text:
        return min(usable_cores(), blas[1]()) if blas is not None else 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"XPNET_NUM_THREADS must be a positive integer, got {text!r}")
    return int(text)


class BatchSplitter:
    """Run ``fn(part, start, stop)`` over slices of a batch, one slice per worker thread."""

    def __init__(self, threads=None):
        self.blas = find_openblas()
        wanted = _configured_threads(self.blas) if threads is None else int(threads)
        self.threads = wanted if self.blas is not None else 1
        self._pool = None
        self._lock = threading.Lock()  # one split region at a time; a nested or concurrent one runs in place
        if self.threads > 1:
            self.blas[0](1)  # see the module docstring: OpenBLAS's spinning workers would take our cores

    def __repr__(self):
        return f"BatchSplitter(threads={self.threads})"

    def slices(self, n, min_per_thread=1):
        """``[(start, stop), ...]``: ``n`` split into at most ``threads`` nearly equal parts."""
        parts = max(1, min(self.threads, n // max(1, min_per_thread)))
        return [(n * k // parts, n * (k + 1) // parts) for k in range(parts)]

    def run(self, fn, n, min_per_thread=1):
        """Call ``fn(k, start, stop)`` for each slice of ``range(n)``; returns their results in order."""
        slices = self.slices(n, min_per_thread)
        if len(slices) == 1 or not self._lock.acquire(blocking=False):
            return [fn(k, a, b) for k, (a, b) in enumerate(slices)]  # nested or concurrent use: run in place
        try:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="xpnet-cpu")
            futures = [self._pool.submit(fn, k, a, b) for k, (a, b) in enumerate(slices[1:], start=1)]
            first = fn(0, *slices[0])  # this thread takes the first slice
            return [first] + [f.result() for f in futures]
        finally:
            self._lock.release()

"""Both cores for the NumPy backend: a batch split over worker threads, each running BLAS on one thread.

NumPy runs copies and element-wise work on one core, and OpenBLAS's own threads help only inside a
GEMM. Convolution is mostly copies (im2col, col2im) between GEMMs, so the NumPy backend instead splits
the batch into one slice per core and runs a whole slice (copies + GEMMs) in each thread: NumPy and
OpenBLAS release the GIL, so the slices run at the same time.

Inside a split region NumPy's BLAS runs one thread (threadpoolctl sets it on entry and restores the
caller's count on exit, errors included): a multi-threaded GEMM's spinning workers would take the core
that another slice needs. Outside xpnet's regions the process keeps whatever thread count it had, so a
user's own NumPy code after ``import xpnet`` is not confined to one core.

``XPNET_NUM_THREADS`` sets the number of worker threads (default: NumPy's BLAS thread count, so
``OPENBLAS_NUM_THREADS=1`` keeps a process on one core, capped by the usable cores); 1 turns the split
off. Without a BLAS whose thread count threadpoolctl can set, the split is off.
"""

import os
import queue
import threading
from contextlib import nullcontext

_CONTROLLER = None


def blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded in this process (NumPy's among them), or None."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import numpy  # noqa: F401 - load NumPy's BLAS before looking for it
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _CONTROLLER if _CONTROLLER.lib_controllers else None


def blas_threads():
    """Threads NumPy's BLAS runs with now (the largest over the loaded BLAS libraries), or None if unknown."""
    blas = blas_controller()
    return max(lib.num_threads for lib in blas.lib_controllers) if blas is not None else None


def usable_cores():
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _configured_threads(blas_count):
    """XPNET_NUM_THREADS, else the BLAS's own thread count (OPENBLAS_NUM_THREADS...) capped by the cores."""
    text = os.environ.get("XPNET_NUM_THREADS", "").strip()
    if not text:
        return min(usable_cores(), blas_count) if blas_count is not None else 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"XPNET_NUM_THREADS must be a positive integer, got {text!r}")
    return int(text)


class BatchSplitter:
    """Run ``fn(part, start, stop)`` over slices of a batch, one slice per worker thread."""

    def __init__(self, threads=None):
        self.blas = blas_controller()
        count = None if self.blas is None else max(lib.num_threads for lib in self.blas.lib_controllers)
        wanted = _configured_threads(count) if threads is None else int(threads)
        self.threads = wanted if self.blas is not None else 1
        self._pool = None
        self._lock = threading.Lock()  # one split region at a time; a nested or concurrent one runs in place

    def __repr__(self):
        return f"BatchSplitter(threads={self.threads})"

    def slices(self, n, min_per_thread=1):
        """``[(start, stop), ...]``: ``n`` split into at most ``threads`` nearly equal parts."""
        parts = max(1, min(self.threads, n // max(1, min_per_thread)))
        return [(n * k // parts, n * (k + 1) // parts) for k in range(parts)]

    def one_blas_thread(self):
        """Context manager: NumPy's BLAS on one thread inside, the caller's thread count restored after."""
        return self.blas.limit(limits=1) if self.blas is not None else nullcontext()

    def run(self, fn, n, min_per_thread=1, blas=True):
        """Call ``fn(k, start, stop)`` for each slice of ``range(n)``; returns their results in order.

        ``blas=False``: ``fn`` calls no BLAS (a compiled kernel), so its thread count is left alone.
        """
        slices = self.slices(n, min_per_thread)
        if len(slices) == 1 or not self._lock.acquire(blocking=False):
            return [fn(k, a, b) for k, (a, b) in enumerate(slices)]  # nested or concurrent use: run in place
        try:
            with self.one_blas_thread() if blas else nullcontext():
                if self._pool is None or self._pool.pid != os.getpid():  # none yet, or a forked child's copy
                    self._pool = _Workers(self.threads - 1)
                return self._pool.run(fn, slices)
        finally:
            self._lock.release()


class _Workers:
    """Daemon threads, each taking slices from its own queue: a hand-over costs ~10 us, a
    ThreadPoolExecutor's future ~35 us (a training step hands over ~45 times)."""

    def __init__(self, n):
        self.pid = os.getpid()  # a fork copies this object but not its threads
        self._inboxes = [queue.SimpleQueue() for _ in range(n)]
        self._done = queue.SimpleQueue()
        for i, inbox in enumerate(self._inboxes):
            threading.Thread(target=self._work, args=(inbox,), name=f"xpnet-cpu-{i}", daemon=True).start()

    def _work(self, inbox):
        while True:
            fn, k, a, b = inbox.get()
            try:
                self._done.put((k, fn(k, a, b), None))
            except BaseException as e:  # handed to the caller, raised there
                self._done.put((k, None, e))

    def run(self, fn, slices):
        """``fn(k, a, b)`` for each slice: the first here, the others on the workers; results in order."""
        for inbox, (k, (a, b)) in zip(self._inboxes, enumerate(slices[1:], start=1)):
            inbox.put((fn, k, a, b))
        first, error = None, None
        try:
            first = fn(0, *slices[0])
        except BaseException as e:
            error = e
        results = {}
        for _ in slices[1:]:  # no slice may outlive the region (its BLAS limit, its lock)
            k, value, e = self._done.get()
            results[k] = value
            error = error or e
        if error is not None:
            raise error
        return [first] + [results[k] for k in range(1, len(slices))]


def sum_slices(parts, dtype):
    """The slices' ``(dW, db)`` partial sums (each accumulated in float32 at least) added up, cast to ``dtype``."""
    dW = sum((p[0] for p in parts[1:]), parts[0][0])
    db = sum((p[1] for p in parts[1:]), parts[0][1])
    return dW.astype(dtype, copy=False), db.astype(dtype, copy=False)


def runner(split, blas=True):
    """``run(fn, n)`` over slices of the batch: the splitter's threads, or one call in place.

    ``blas``: as in :meth:`BatchSplitter.run`.
    """
    if split is None:
        return lambda fn, n: [fn(0, 0, n)]
    return lambda fn, n: split.run(fn, n, blas=blas)

"""Device time of consecutive pieces of queued GPU work: CUDA events behind a spin kernel.

A CUDA event interval recorded on an idle stream measures how long the *host* took to queue the work
whenever the kernels are shorter than their launches (a launch costs a few microseconds; many of a
small network's kernels take less): the GPU waits for each launch, and the interval counts the
waiting. :class:`CudaTimeline` first queues a kernel that keeps the GPU busy for a while, then records
an event between the pieces (layers) the host queues behind it. While the spin lasts, the GPU has not
reached those events yet, so once it does it runs the pieces' kernels back to back, and each interval
is device time only. Whether that held is checked per piece: after queueing piece k the host asks
(without waiting) whether the event before it has been reached; not yet means the whole piece was queued
before the GPU started it.
"""

import time

_CALIBRATION = 1 << 16  # iterations timed once to convert milliseconds of spin into iterations


class Spinner:
    """Keeps the current stream busy for a given number of milliseconds with ``kernel`` (cuda_kernels.SPIN);
    calibrated on first use, recalibrated from every timed spin."""

    def __init__(self, cupy, kernel):
        self._cp = cupy
        self._kernel = kernel
        self._out = cupy.zeros(1, dtype=cupy.float32)
        self._per_ms = None

    def _calibrate(self):
        cp = self._cp
        self._kernel(_CALIBRATION, self._out)  # compile and warm up
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        self._kernel(_CALIBRATION, self._out)
        end.record()
        end.synchronize()
        self._per_ms = _CALIBRATION / max(cp.cuda.get_elapsed_time(start, end), 1e-3)

    def hold(self, ms):
        """Queue about ``ms`` milliseconds of spinning on the current stream (returns at once); the iterations."""
        if self._per_ms is None:
            self._calibrate()
        n = max(1, int(ms * self._per_ms))
        self._kernel(n, self._out)
        return n

    def observe(self, n, ms):
        """A spin of ``n`` iterations took ``ms``: recalibrate (the GPU's clock rises from idle under load)."""
        if ms > 0:
            self._per_ms = n / ms


class CudaTimeline:
    """Marks between pieces of work queued behind a spin of ``hold_ms``; see the module docstring.

    Use: ``tl = backend.timeline(hold_ms)``, ``tl.mark()`` before the first piece and after each one, then
    ``tl.intervals()``: ``[(device_ms, device_only), ...]``, one per piece; ``tl.host_ms``: how long the host
    took to queue them all (the next timeline's ``hold_ms`` should exceed it).
    """

    def __init__(self, cupy, spinner, hold_ms):
        self._cp, self._spinner = cupy, spinner
        self._events, self._reached = [], []
        self._spin_start = cupy.cuda.Event()
        self._spin_start.record()
        self._spun = spinner.hold(hold_ms)
        self._first = None

    def mark(self):
        event = self._cp.cuda.Event()
        event.record()
        if self._events:
            self._reached.append(self._events[-1].done)  # the piece's start already passed: not back to back
        else:
            self._first = time.perf_counter()
        self._last = time.perf_counter()
        self._events.append(event)

    @property
    def host_ms(self):
        return (self._last - self._first) * 1e3 if self._first is not None else 0.0

    def intervals(self):
        """``[(device_ms, device_only)]`` between consecutive marks (waits for the last one); ``device_only`` is
        False where the GPU reached the piece before the host had queued all of it (the interval then
        includes launch waits)."""
        if not self._events:
            return []
        self._events[-1].synchronize()
        elapsed = self._cp.cuda.get_elapsed_time
        self._spinner.observe(self._spun, elapsed(self._spin_start, self._events[0]))
        return [(elapsed(a, b), not reached)
                for a, b, reached in zip(self._events[:-1], self._events[1:], self._reached)]

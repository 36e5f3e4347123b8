"""Stage timing for the CPU convolution plans: a no-op unless a caller records (the benchmarks' conv suite)."""

import threading
import time


class StageClock:
    """Times a plan's stages while :meth:`recording`; otherwise calls them straight through."""

    def __init__(self):
        self._times = None
        self._lock = threading.Lock()

    def run(self, name, k, fn, *args):
        """``fn(*args)``, its wall time added to stage ``name`` of batch slice ``k`` when recording."""
        if self._times is None:
            return fn(*args)
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            ms = (time.perf_counter() - start) * 1e3
            with self._lock:
                per_slice = self._times.setdefault(name, {})
                per_slice[k] = per_slice.get(k, 0.0) + ms

    def recording(self):
        """Context manager yielding a dict that fills, on exit, with ``{stage: ms}`` of the plans run inside.

        A stage's ms is its time summed over the calls, averaged over the batch slices (threads) that ran
        it: with the slices running side by side, that is its share of the wall time.
        """
        return _Recording(self)


class _Recording:
    def __init__(self, clock):
        self.clock, self.result = clock, {}

    def __enter__(self):
        if self.clock._times is not None:
            raise RuntimeError("conv stages are already being recorded")
        self.clock._times = {}
        return self.result

    def __exit__(self, *exc):
        times, self.clock._times = self.clock._times, None
        self.result.update({name: sum(s.values()) / len(s) for name, s in times.items()})
        return False

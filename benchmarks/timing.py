"""Warm-up, repeats and robust statistics around device-correct timers.

A timer here is a zero-argument callable returning a context manager with ``elapsed_ms`` after exit,
such as ``backend.timer`` (``perf_counter`` on the CPU, CUDA events plus a synchronize on a GPU).
"""

from xpnet.profile import time_stats


def stats(samples_ms):
    """``{"median_ms", "min_ms", "max_ms", "repeats"}`` of a non-empty list of milliseconds."""
    median, low, high = time_stats(samples_ms)
    return {"median_ms": median, "min_ms": low, "max_ms": high, "repeats": len(samples_ms)}


def measure(fn, timer, repeats, warmup=1):
    """Call ``fn()`` ``warmup`` times untimed, then time ``repeats`` calls one by one.

    Args:
        fn: the work; it must queue everything it does on the device ``timer`` watches.
        timer: e.g. ``backend.timer``. repeats: timed calls (>= 1). warmup: untimed calls first.

    Returns:
        dict from :func:`stats`.
    """
    return interleaved({"only": (fn, timer)}, repeats, warmup)["only"]


def interleaved(contenders, repeats, warmup=1):
    """Time several contenders in one run, alternating them so drift (heat, other load) hits all alike.

    Each round runs every contender once; odd rounds run them in reverse order (A B, B A, A B...),
    so neither side always follows the other.

    Args:
        contenders: ``{name: (fn, timer)}``. repeats: timed rounds (>= 1). warmup: untimed rounds.

    Returns:
        ``{name: stats}`` with :func:`stats` dicts.
    """
    if int(repeats) < 1 or int(warmup) < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats!r}, {warmup!r}")
    names = list(contenders)
    samples = {name: [] for name in names}
    for i in range(int(warmup) + int(repeats)):
        for name in names if i % 2 == 0 else reversed(names):
            fn, timer = contenders[name]
            with timer() as tm:
                fn()
            if i >= warmup:
                samples[name].append(tm.elapsed_ms)
    return {name: stats(values) for name, values in samples.items()}

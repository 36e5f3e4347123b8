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


def interleaved(contenders, repeats, warmup=1, block=1):
    """Time several contenders in one run, alternating them so drift (heat, other load) hits all alike.

    Each round runs every contender for ``block`` timed calls; odd rounds run them in reverse order
    (A B, B A, A B...). With ``block`` > 1 and several contenders, each contender's turn starts with one
    untimed call: what the other side leaves behind (PyTorch's OpenMP workers spinning after its call,
    OpenBLAS's after a threaded GEMM) then slows that call, not a timed one, and every sample is the
    contender in its own steady state. (Measured on the 2-core machine, DeepConvNet inference batch 100:
    xpnet 23.9 ms right after PyTorch, 18.9 ms after itself.)

    Args:
        contenders: ``{name: (fn, timer)}``. repeats: timed calls per contender (>= 1). warmup: untimed
        calls first. block: timed calls per turn (>= 1).

    Returns:
        ``{name: stats}`` with :func:`stats` dicts.
    """
    if int(repeats) < 1 or int(warmup) < 0 or int(block) < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0 and block >= 1, got {repeats!r}, {warmup!r}, {block!r}")
    names = list(contenders)
    settle = 1 if block > 1 and len(names) > 1 else 0
    samples = {name: [] for name in names}
    for _ in range(int(warmup)):
        for name in names:
            contenders[name][0]()
    turn = 0
    while len(samples[names[0]]) < int(repeats):
        for name in names if turn % 2 == 0 else reversed(names):
            fn, timer = contenders[name]
            for k in range(settle + min(int(block), int(repeats) - len(samples[name]))):
                with timer() as tm:
                    fn()
                if k >= settle:
                    samples[name].append(tm.elapsed_ms)
        turn += 1
    return {name: stats(values) for name, values in samples.items()}

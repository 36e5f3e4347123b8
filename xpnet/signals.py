"""SIGINT and SIGTERM stop a command the same way: one exception, a clean shutdown, exit 128 + signal.

Inside :func:`stop_on_signals` the first SIGINT or SIGTERM raises :class:`Interrupted` (a
``KeyboardInterrupt``, so code that keeps a checkpoint on Ctrl-C keeps it on SIGTERM too); any later
one is ignored so that the shutdown it started (the message, the resume line) is not cut short by a
second traceback. Batch schedulers and ``timeout`` send SIGTERM.
"""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupted(KeyboardInterrupt):
    """A stopping signal arrived; ``signum`` says which."""

    def __init__(self, signum):
        super().__init__(NAMES.get(signum, str(signum)))
        self.signum = signum


def signal_of(exc):
    """The signal number behind a KeyboardInterrupt (SIGINT unless it says otherwise)."""
    return getattr(exc, "signum", signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(process=False):
    """Handle SIGINT and SIGTERM as described above within the block (main thread only).

    On leaving, the previous handlers come back, except that with ``process=True`` (the block is the
    whole command, about to exit) signals stay ignored once one arrived, so a late second one cannot
    end the exit with a traceback. A caller that goes on (``main([...])`` in a test or a notebook)
    passes False: ignored signals would be inherited by every child process it starts afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return  # a second signal while the first one's shutdown runs
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, signal.SIG_IGN if fired and process else old)

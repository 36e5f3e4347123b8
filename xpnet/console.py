"""Best-effort console output: a closed pipe or a full disk behind stdout never stops a run.

:func:`say` prints a line on stdout; after the first failure stdout is pointed at ``/dev/null`` (so
the interpreter's final flush cannot fail either) and later lines go only where else they go.
:class:`Console` adds a log file (a run's ``train.log``) that gets every line, also best-effort.
"""

import contextlib
import os
import sys
import warnings

from tqdm import tqdm

_stdout_broken = False


def say(text):
    """Print ``text`` on stdout (above a progress bar, if one is shown); never raises for a failed write."""
    global _stdout_broken
    if _stdout_broken:
        return
    try:
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()
    except (OSError, ValueError):  # EPIPE, ENOSPC, EIO, or a closed stream
        _stdout_broken = True
        _silence_stdout()


def _silence_stdout():
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class Console:
    """:func:`say` plus a log file that gets every line (opened for appending; a failure is one warning).

    Args:
        log_path: the log file, or None for stdout alone.
    """

    def __init__(self, log_path=None):
        self.log = None
        if log_path is not None:
            try:
                self.log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
            except OSError as e:
                warnings.warn(f"cannot write the log {log_path}: {e.strerror or e}; logging to stdout only",
                              stacklevel=2)

    def write(self, text):
        say(text)
        if self.log is None:
            return
        try:
            self.log.write(text + "\n")
            self.log.flush()
        except OSError as e:
            warnings.warn(f"cannot write the log {self.log.name}: {e.strerror or e}; logging to stdout only",
                          stacklevel=2)
            self.close()

    def close(self):
        if self.log is not None:
            with contextlib.suppress(OSError):
                self.log.close()
            self.log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

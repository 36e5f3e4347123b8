"""A training run's output directory: what xpnet may write there, and one run at a time.

A run directory holds only xpnet's own files (:data:`RUN_FILES`). A directory holding anything else,
or a finished or interrupted run, is refused unless the run resumes it; :class:`RunLock` (an
``fcntl.flock`` on ``.xpnet.lock``, held for the whole run) refuses a second run at once and names
the process that holds it.
"""

import contextlib
import fcntl
import json
import os
import socket
import time

from xpnet.errors import RunDirError

LOCK_NAME = ".xpnet.lock"
LOG_NAME = "train.log"
# Everything `xpnet train` writes into a run directory.
RUN_FILES = ("checkpoint.npz", "model.npz", "metrics.json", "metrics.csv", "curves.png", LOG_NAME, LOCK_NAME,
             "ensemble.json")
# What a run that stopped before its first checkpoint leaves; a new run may start over it.
SCRATCH = (LOCK_NAME, LOG_NAME)


def check_target(out):
    """Raise :class:`RunDirError` unless ``out`` can be (or already is) a directory."""
    if os.path.islink(out) and not os.path.exists(out):
        raise RunDirError(f"{out}: --out is a symbolic link to {os.readlink(out)!r}, which does not exist; "
                          "create its target or choose another --out")
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunDirError(f"{out}: --out exists and is not a directory")


def foreign_files(out, resume=False):
    """The entries of ``out`` that a new run (``resume=False``) or a resumed one must not write over.

    A new run may only start in a missing or empty directory, or one left by a run that stopped before
    its first checkpoint (:data:`SCRATCH`); a resumed run's directory may hold only :data:`RUN_FILES`,
    ensemble members and xpnet's own temporary files.
    """
    if not os.path.isdir(out):
        return []
    allowed = RUN_FILES if resume else SCRATCH
    return sorted(name for name in os.listdir(out) if not (name in allowed or _own_temp(name, out, resume)))


def _own_temp(name, out, resume):
    """A temporary file of an interrupted atomic write (``.model.npz.abc123.tmp``), or a member directory."""
    if name.startswith(".") and name.endswith(".tmp") and any(name.startswith(f".{f}.") for f in RUN_FILES):
        return True
    return resume and name.startswith("member") and name[6:].isdigit() and os.path.isdir(os.path.join(out, name))


def check_new_run(out):
    """Refuse a directory that already holds a run or files xpnet did not write (a new run, no --resume)."""
    check_target(out)
    found = foreign_files(out)
    if "checkpoint.npz" in found:
        raise RunDirError(f"{out}: already holds a training run (checkpoint.npz); continue it with --resume or "
                          "choose another --out")
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise RunDirError(f"{out}: --out already holds {shown}; xpnet writes a run only into a new or empty "
                          "directory (nothing there is overwritten); choose another --out")


def check_resumed_run(out):
    """Refuse resuming into a directory that holds files a run does not write (they could be overwritten)."""
    check_target(out)
    found = foreign_files(out, resume=True) + [name for name, fmt in OWN_FORMATS.items() if not _is_own(out, name, fmt)]
    if found:
        raise RunDirError(f"{out}: holds {', '.join(found[:5])}, which xpnet did not write; move them out "
                          "before resuming this run")


def probe_lock(out):
    """Raise :class:`RunDirError` now if another run holds ``out`` (creates nothing)."""
    path = os.path.join(out, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise _busy(out, fd) from None
    except OSError:
        pass
    finally:
        os.close(fd)


OWN_FORMATS = {"model.npz": "xpnet-model", "metrics.json": None}  # the checkpoint: read and checked by resume


def _is_own(out, name, fmt):
    """Whether ``out/name`` (absent counts as yes) is the kind of file xpnet writes under that name."""
    path = os.path.join(out, name)
    if not os.path.lexists(path):
        return True
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    try:
        if fmt is not None:
            from xpnet.serialization import read_meta

            read_meta(path, fmt)
            return True
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(1 << 24))
        return isinstance(data, dict) and set(data) == {"config", "history"}
    except (ValueError, OSError, UnicodeDecodeError):
        return False


class RunLock:
    """An exclusive lock on run directory ``out`` until :meth:`release` (or the process ends).

    Raises:
        RunDirError: another process holds it; the message names its pid, host and start time.
    """

    def __init__(self, out, command=""):
        self.path = os.path.join(out, LOCK_NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _busy(out, fd)
            os.close(fd)
            raise error from None
        except OSError:
            os.close(fd)  # a file system without locks: run unlocked rather than not at all
            self.fd = None
            return
        self.fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": command}
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)

    def release(self):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _busy(out, fd):
    return RunDirError(f"{out}: another xpnet run is using this directory ({_holder(fd)}); wait for it to end or "
                       "choose another --out")


def _holder(fd):
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said which"

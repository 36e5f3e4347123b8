"""Exceptions a user can cause; the CLI prints them as one line."""


class XpnetError(Exception):
    """Base class of every error xpnet raises on purpose."""


class BackendError(XpnetError, RuntimeError):
    """A backend was asked for that cannot run here (no CuPy, no device)."""


class DeviceMismatchError(XpnetError, TypeError):
    """Arrays on two devices met inside one layer."""


class ShapeError(XpnetError, ValueError):
    """An input of the wrong shape reached a layer or model."""


class DTypeError(XpnetError, TypeError):
    """An input of the wrong dtype reached a layer or model."""


class DataError(XpnetError, ValueError):
    """A dataset could not be found, read or verified."""


class FileFormatError(XpnetError, ValueError):
    """A saved model, checkpoint or parameter file is malformed or foreign."""


class UnsafePickleError(FileFormatError):
    """A pickle asked to run something other than NumPy array reconstruction."""


class RunDirError(XpnetError, OSError):
    """A run directory that a run may not use: another run holds it, or it holds files xpnet did not write."""

    def __str__(self):
        return self.args[0] if self.args else ""


class TrainingError(XpnetError, RuntimeError):
    """Training cannot go on (a non-finite loss, say)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped training; the last completed epoch's checkpoint, if any, is intact.

    A ``KeyboardInterrupt`` (not an ``Exception``), so ``except Exception`` never swallows a Ctrl-C.

    Attributes:
        epoch: the epoch that was running (1-based). step: the updates taken so far.
        checkpoint: the checkpoint a resume continues from, or None when none was written.
        resume_command: the command line that continues the run, where the caller knows one (the CLI).
        signum: the signal that stopped it (SIGINT 2, SIGTERM 15).
    """

    def __init__(self, epoch, step, checkpoint=None, resume_command=None, signum=2):
        super().__init__(f"interrupted at epoch {epoch} step {step}")
        self.epoch, self.step, self.checkpoint, self.signum = epoch, step, checkpoint, signum
        self.resume_command = resume_command


class ExportError(XpnetError, ValueError):
    """A model cannot be exported (a layer the exporter does not know, a file it must not overwrite)."""

"""``xpnet`` / ``python -m xpnet``: train, eval, ensemble, info. User errors end in one line on stderr."""

import argparse
import os
import signal
import sys
import traceback
import warnings

from xpnet.errors import TrainingInterrupted, XpnetError
from xpnet.signals import NAMES, signal_of, stop_on_signals

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other error."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"xpnet: error: {_one_line(message)} (see: {self.prog} --help)\n")


def build_parser():
    from xpnet.cli import commands, ensemble, export

    p = _Parser(prog="xpnet", description="Deep learning from scratch on NumPy or CuPy.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    commands.add_train(sub)
    commands.add_eval(sub)
    ensemble.add_ensemble(sub)
    export.add_export(sub)
    commands.add_info(sub)
    return p


def main(argv=None):
    """Entry point; returns the process exit code.

    Every failure is one line on stderr (``xpnet --debug ...`` re-raises it with its traceback):
    exit 1 for errors, 2 for bad arguments, 130 for Ctrl-C and 143 for SIGTERM (training names how to resume).
    """
    process = argv is None  # the command itself, not a call from Python code that goes on afterwards
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    world = None  # the MPI world of a --distributed run, once started: an error on any rank aborts them all
    with warnings.catch_warnings(), stop_on_signals(process):
        warnings.showwarning = _show_warning
        # NumPy's floating-point warnings are noise here: the Trainer names a non-finite loss itself.
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
        try:
            config, world = args.configure(args, argv)  # checked before any data is read
            return args.func(config, world) or 0
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (xpnet.signals): exit 130 or 143
            print(f"xpnet: {_rank(world)}{_interrupted(e)}", file=sys.stderr)
            return _end(world, 128 + signal_of(e))
        except BrokenPipeError:  # stdout closed early (xpnet info | head): not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_ERROR
        except Exception as e:  # nothing reaches the user as a traceback without --debug
            if args.debug and _peers(world) is None:
                raise
            if args.debug:
                traceback.print_exc()
            print(f"xpnet: error: {_rank(world)}{_describe(e)}", file=sys.stderr)
            return _end(world, EXIT_ERROR)


def _peers(world):
    """``world`` when it has more than one rank, else None."""
    return world if world is not None and world.size > 1 else None


def _rank(world):
    world = _peers(world)
    return f"[rank {world.rank}/{world.size}] " if world else ""


def _end(world, code):
    """Return ``code``; in a job of several ranks, abort them all (MPI_Abort) so none waits forever."""
    world = _peers(world)
    if world is not None:
        from xpnet.distributed.abort import abort_world

        abort_world(world, code)
    return code


def _describe(e):
    if isinstance(e, MemoryError):
        return f"out of memory ({_one_line(e)}); try a smaller --batch-size"
    if isinstance(e, (XpnetError, ValueError, TypeError, OSError, KeyError)):
        return _one_line(e)
    return f"internal error {type(e).__name__}: {_one_line(e)} (run 'xpnet --debug ...' for the traceback)"


def _interrupted(e):
    how = "interrupted" if signal_of(e) == signal.SIGINT else f"stopped by {NAMES.get(signal_of(e), 'a signal')}"
    if not isinstance(e, TrainingInterrupted):
        return how
    where = f"{how} at epoch {e.epoch} step {e.step}"
    command = e.resume_command
    if e.checkpoint is None:
        return f"{where}; no epoch had finished, so nothing was saved"
    return f"{where}; resume with: {command}" if command else f"{where}; checkpoint {e.checkpoint} is intact"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"xpnet: warning: {_one_line(message)}", file=sys.stderr)


def _one_line(e):
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())

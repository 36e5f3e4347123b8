"""One failing rank ends the whole job: its message on stderr, then ``MPI_Abort`` (no rank left hanging).

This is what ``python -m mpi4py script.py`` does for an uncaught exception; the CLI does it for its own
errors so they keep their one-line form.
"""

import sys
from contextlib import contextmanager


def abort_world(world, code=1, message=None):
    """Print ``message`` (prefixed with the rank) to stderr, flush, and abort every rank with ``code``."""
    if message:
        print(f"[rank {world.rank}/{world.size}] {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if world.size > 1:
        world.comm.Abort(code)
    return code


@contextmanager
def abort_on_exception(world, code=1):
    """Run the block; on any exception print it with this rank's number and abort all ranks.

    Example:
        >>> with abort_on_exception(world):
        ...     trainer.fit()
    """
    try:
        yield world
    except BaseException as e:
        if world.size <= 1:
            raise
        abort_world(world, code, f"{type(e).__name__}: {e}")

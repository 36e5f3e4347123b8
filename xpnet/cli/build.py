"""The CLI's output directory and ``--model-arg`` parsing."""

import inspect
import json
import os
import time

from xpnet import rundir
from xpnet.console import Console


def resolve_out_dir(args, create=True):
    """Return ``(out_dir, checkpoint_to_resume_or_None)`` for ``args.out`` and ``args.resume`` (a TrainConfig);
    with ``create=False`` check only, make nothing.

    A new run needs a new or empty ``--out`` (:func:`xpnet.rundir.check_new_run`), a resumed one a run
    directory holding nothing xpnet did not write; either is refused at once while another run holds
    the directory. Call :func:`make_out_dir` (or :func:`open_run_dir`) later for a directory checked that way.
    """
    if args.resume is not None:
        run_dir = args.out if args.resume is True else args.resume
        if not run_dir:
            raise ValueError("--resume needs a run directory: --resume DIR or --out DIR --resume")
        path = os.path.join(run_dir, "checkpoint.npz")
        rundir.check_target(run_dir)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "no checkpoint to resume from", path)
        rundir.check_resumed_run(run_dir)
        rundir.probe_lock(run_dir)
        return run_dir, path
    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    rundir.check_new_run(out)  # never overwrite another run's work or a file xpnet did not write
    rundir.probe_lock(out)
    if create:
        make_out_dir(out)
    elif os.path.exists(out) and not os.access(out, os.W_OK):
        raise PermissionError(13, "output directory is not writable", out)
    return out, None


def make_out_dir(out):
    """Create ``out`` (and parents) and check that it is writable."""
    os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(13, "output directory is not writable", out)


def open_run_dir(hold, out, resume, command=""):
    """Create ``out``, lock it for this run (until ``hold``, an ExitStack, closes) and check it again
    under the lock; returns the run's :class:`~xpnet.console.Console` (stdout and ``out/train.log``)."""
    make_out_dir(out)
    hold.enter_context(rundir.RunLock(out, command))
    (rundir.check_resumed_run if resume else rundir.check_new_run)(out)  # another run may have finished meanwhile
    return hold.enter_context(Console(os.path.join(out, rundir.LOG_NAME)))


RESERVED = ("input_dim", "input_size", "output_size", "seed", "dtype", "backend")  # set from the data and flags


def model_args(arch, items):
    """``--model-arg KEY=VALUE`` items as constructor keyword arguments (VALUE parsed as JSON, else text)."""
    from xpnet.models import REGISTRY

    accepted = [k for k in inspect.signature(REGISTRY[arch].__init__).parameters if k not in ("self", *RESERVED)]
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--model-arg: expected KEY=VALUE, got {item!r}")
        if key not in accepted:
            raise ValueError(f"--model-arg: {arch} has no argument {key!r}; its arguments: {', '.join(accepted)}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def check_model_args(arch, kwargs):
    """Raise ValueError naming the argument if the model's constructor rejects ``kwargs`` (allocates nothing)."""
    from xpnet.init import BudgetExceeded, allocation_budget
    from xpnet.models import REGISTRY

    try:
        with allocation_budget(0):  # the constructor checks its arguments, then stops at its first weight
            REGISTRY[arch](**kwargs)
    except BudgetExceeded:
        pass
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
        raise ValueError(f"--model-arg: {e}") from None

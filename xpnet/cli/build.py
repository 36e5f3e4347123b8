"""The CLI's output directory and ``--model-arg`` parsing."""

import inspect
import json
import os
import time


def resolve_out_dir(args, create=True):
    """Return ``(out_dir, checkpoint_to_resume_or_None)`` for ``args.out`` and ``args.resume`` (a TrainConfig);
    with ``create=False`` check only, make nothing.

    Call :func:`make_out_dir` later to create a directory checked that way.
    """
    if args.resume is not None:
        run_dir = args.out if args.resume is True else args.resume
        if not run_dir:
            raise ValueError("--resume needs a run directory: --resume DIR or --out DIR --resume")
        path = os.path.join(run_dir, "checkpoint.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(2, "no checkpoint to resume from", path)
        return run_dir, path
    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    if os.path.exists(os.path.join(out, "checkpoint.npz")):  # never overwrite another run's work
        raise FileExistsError(17, "already holds a training run (checkpoint.npz); continue it with --resume "
                                  "or choose another --out", out)
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

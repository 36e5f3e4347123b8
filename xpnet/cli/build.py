"""Building the optimizer, schedule and output directory from CLI arguments."""

import os
import time

from xpnet import optim


def make_optimizer(args, steps_per_epoch):
    total = args.epochs * steps_per_epoch
    warm = int(round(args.warmup_epochs * steps_per_epoch))
    schedule = None
    if args.schedule == "step":
        schedule = optim.StepDecay(max(1, total // 3), 0.1)
    elif args.schedule == "cosine":
        schedule = optim.Cosine(max(1, total - warm))
    if warm:
        schedule = optim.Warmup(warm, schedule)
    return optim.get(args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=schedule)


def resolve_out_dir(args):
    """Return ``(out_dir, checkpoint_to_resume_or_None)``."""
    if args.resume is not None:
        run_dir = args.out if args.resume is True else args.resume
        if not run_dir:
            raise ValueError("--resume needs a run directory: --resume DIR or --out DIR --resume")
        path = os.path.join(run_dir, "checkpoint.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(2, "no checkpoint to resume from", path)
        return run_dir, path
    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, "checkpoint.npz")):  # never overwrite another run's work
        raise FileExistsError(17, "already holds a training run (checkpoint.npz); continue it with --resume "
                                  "or choose another --out", out)
    if not os.access(out, os.W_OK):
        raise PermissionError(13, "output directory is not writable", out)
    return out, None

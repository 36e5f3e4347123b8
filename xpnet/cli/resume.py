"""``--resume``: the arguments that define a run must be the run's own."""

import os

from xpnet.errors import RunDirError
from xpnet.serialization import read_meta

# Arguments that change what a resumed run computes (epochs too, when a schedule spans them).
MEANING = ("model", "model_arg", "dataset", "batch_size", "lr", "optimizer", "weight_decay", "schedule",
           "warmup_epochs", "augment", "dtype", "seed", "limit", "distributed", "scale_lr")


def check_resume_args(path, args):
    """Raise RunDirError naming every argument of ``args`` that differs from the checkpoint's run.

    Checkpoints that recorded no configuration (written by older versions) are not checked.
    """
    meta = read_meta(path, "xpnet-checkpoint")
    extra = meta.get("extra")
    saved = extra.get("config") if isinstance(extra, dict) else None
    if not isinstance(saved, dict):
        return
    keys = list(MEANING)
    if saved.get("schedule", "none") != "none" or saved.get("warmup_epochs", 0):
        keys.append("epochs")  # the schedule's length is the run's length
    changed = []
    for key in keys:
        if key not in saved or not hasattr(args, key):
            continue
        was, now = _norm(key, saved[key]), _norm(key, getattr(args, key))
        if was != now:
            changed.append(f"--{key.replace('_', '-')} {_show(getattr(args, key))} (the run used "
                           f"{_show(saved[key])})")
    if changed:
        raise RunDirError(f"{path}: --resume with arguments that change the run: {'; '.join(changed)}; resume "
                          "with the run's own arguments, or train anew with another --out")


def _norm(key, value):
    if key == "model_arg":
        return sorted(str(v).strip() for v in value or [])
    if key == "dataset" and value != "mnist" and isinstance(value, str):
        return os.path.realpath(value)
    if key == "augment" and isinstance(value, str):
        return "".join(value.lower().split())
    return value


def _show(value):
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    return "(none)" if value is None else str(value)

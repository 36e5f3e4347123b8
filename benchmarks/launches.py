"""Kernel launches, device allocations and host syncs per DeepConvNet training step, by phase.

Counted on the emulated CUDA device (``tests/emulated_cupy``: CuPy's API over NumPy, the kernels' own
CUDA C compiled for the host), so it runs without a GPU and gives the same counts on every machine.
What counts as a launch, an allocation and a sync is in ``tests/emulated_cupy/counters.py``; composite
CuPy routines count one launch, so the launch counts are a lower bound.

    python -m benchmarks.launches [--batch-size 100] [--json PATH]
"""

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

from xpnet import optim
from xpnet.models import DeepConvNet
from xpnet.training.batches import BatchIterator

PHASES = ("batch", "forward+loss", "backward", "optimizer")
NUMBERS = ("launches", "allocations", "syncs", "h2d")


def _emulator():
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import emulated_cupy
    from emulated_cupy import counters, device

    return emulated_cupy, counters, device


def step_counts(batch_size=100, steps=2, seed=0):
    """``{phase: {"launches", "allocations", "syncs", "h2d"}}`` for the last of ``steps`` training steps
    (the first creates the optimizer's state), plus ``"step"``, their sum. Trains the book's DeepConvNet
    with Adam on random MNIST-shaped data, making the calls the Trainer's step makes; the Trainer's
    running metric sums (a few launches per step, a sync every ``log_every`` steps) are not included."""
    _, counters, device = _emulator()
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size * steps, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, batch_size * steps)
    with device.as_cuda() as be:
        model, opt = DeepConvNet(seed=seed, backend=be), optim.Adam(lr=0.001)
        batches = BatchIterator(x, t, batch_size=batch_size, backend=be, reuse_buffers=True).epoch()
        for _ in range(steps):
            counts = {}
            with counters.counting() as counts["batch"]:
                xb, tb = next(batches)
            with counters.counting() as counts["forward+loss"]:
                model.forward_loss(xb, tb, train=True, reuse=True)
            with counters.counting() as counts["backward"]:
                model.backward()
            with counters.counting() as counts["optimizer"]:
                opt.step(model.trainable_params, model.grads)
    result = {k: v.as_dict() for k, v in counts.items()}
    result["step"] = {k: sum(result[p][k] for p in PHASES) for k in NUMBERS}
    result["step"]["kernels"] = dict(sum((collections.Counter(result[p]["kernels"]) for p in PHASES),
                                         collections.Counter()))
    for c in result.values():
        c["kernels"] = dict(sorted(c["kernels"].items(), key=lambda kv: (-kv[1], kv[0])))
    return result


def table(counts, top=6):
    """The counts as text lines, one row per phase, then each phase's most launched kernels."""
    lines = [f"{'phase':<14}{'launches':>10}{'allocations':>13}{'syncs':>7}{'h2d':>5}"]
    for phase in (*PHASES, "step"):
        c = counts[phase]
        lines.append(f"{phase:<14}{c['launches']:>10}{c['allocations']:>13}{c['syncs']:>7}{c['h2d']:>5}")
    lines.append("launches by kernel or CuPy routine:")
    for phase in PHASES:
        most = list(counts[phase]["kernels"].items())
        shown = ", ".join(f"{name} {n}" for name, n in most[:top]) + (", ..." if len(most) > top else "")
        lines.append(f"  {phase:<14}{shown}")
    return lines


# -- as a suite of ``python -m benchmarks`` ------------------------------------------------------------
def run(settings):
    """The counts per phase at the suite's DeepConvNet batch size (CUDA backend, emulated device)."""
    batch = settings.batch("deep_convnet")
    return {"batch_size": batch, "device": "emulated CUDA device (tests/emulated_cupy)", "counts": step_counts(batch)}


def render(result, unavailable=None):
    head = (f"DeepConvNet + Adam, one CUDA training step at batch {result['batch_size']}, counted on the "
            f"{result['device']}:")
    return "\n".join([head, *table(result["counts"])])


def plot(result, settings):
    """No figure for counts; returns no paths."""
    return []


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.launches", description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--json", metavar="PATH", help="also write the counts here")
    args = p.parse_args(argv)
    counts = step_counts(args.batch_size)
    print(f"DeepConvNet + Adam, one training step at batch {args.batch_size}, on the emulated CUDA device:")
    print("\n".join(table(counts)))
    if args.json:
        Path(args.json).write_text(json.dumps({"batch_size": args.batch_size, "counts": counts}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

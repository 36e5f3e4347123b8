"""Kernel launches, device allocations and host syncs per DeepConvNet training step, by phase.

``python -m benchmarks.launches`` counts on the emulated CUDA device (``tests/emulated_cupy``: CuPy's API
over NumPy, the kernels' own CUDA C compiled for the host), so it runs without a GPU and gives the same
counts on every machine. What counts as a launch, an allocation and a sync is in
``tests/emulated_cupy/counters.py``; composite CuPy routines count one launch, so the launch counts are
a lower bound. As a suite of ``python -m benchmarks`` with the cuda backend measured, it counts on the
GPU instead, by CUDA graph capture (``backends/cuda_graph_counts.py``).

    python -m benchmarks.launches [--batch-size 100] [--json PATH]
"""

import argparse
import collections
import contextlib
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
    """``{phase: {"launches", "allocations", "syncs", "h2d", "kernels"}}`` for the last of ``steps`` training
    steps (the first creates the optimizer's state and the workspaces), plus ``"step"``, their sum,
    counted on the emulated device. Trains the book's DeepConvNet with Adam on random MNIST-shaped
    data, making the calls the Trainer's step makes; the Trainer's running metric sums (a few launches
    per step, a sync every ``log_every`` steps) are not included."""
    _, counters, device = _emulator()
    with device.as_cuda() as be:
        return _count(be, counters.counting, contextlib.nullcontext(), batch_size, steps, seed)


def gpu_step_counts(backend, batch_size=100, steps=2, seed=0):
    """:func:`step_counts` on a real GPU (``backend``: xpnet's cuda backend), counted by CUDA graph capture
    (``backends/cuda_graph_counts.py``): ``kernels`` are then the graph's nodes by type."""
    counter = backend.launch_counter()
    return _count(backend, counter.counting, counter.stream, batch_size, steps, seed)


def _count(be, counting, stream, batch_size, steps, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size * steps, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, batch_size * steps)
    with stream:
        model, opt = DeepConvNet(seed=seed, backend=be), optim.Adam(lr=0.001)
        batches = BatchIterator(x, t, batch_size=batch_size, backend=be, reuse_buffers=True).epoch()
        for k in range(steps):
            last = k == steps - 1
            counts = {}
            with _phase(counting, last, counts, "batch"):
                xb, tb = next(batches)
            with _phase(counting, last, counts, "forward+loss"):
                model.forward_loss(xb, tb, train=True, reuse=True)
            with _phase(counting, last, counts, "backward"):
                model.backward()
            with _phase(counting, last, counts, "optimizer"):
                opt.step(model.trainable_params, model.grads)
    result = {k: v.as_dict() for k, v in counts.items()}
    result["step"] = {k: _total(result[p][k] for p in PHASES) for k in NUMBERS}
    result["step"]["kernels"] = dict(sum((collections.Counter(result[p]["kernels"]) for p in PHASES),
                                         collections.Counter()))
    for c in result.values():
        c["kernels"] = dict(sorted(c["kernels"].items(), key=lambda kv: (-kv[1], kv[0])))
    return result


@contextlib.contextmanager
def _phase(counting, last, counts, name):
    """Count the block into ``counts[name]`` on the last step; earlier steps just run."""
    if not last:
        yield
        return
    with counting() as counts[name]:
        yield


def _total(values):
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def table(counts, top=6):
    """The counts as text lines, one row per phase, then each phase's most launched kernels."""
    lines = [f"{'phase':<14}{'launches':>10}{'allocations':>13}{'syncs':>7}{'h2d':>5}"]
    for phase in (*PHASES, "step"):
        c = counts[phase]
        h2d = "-" if c["h2d"] is None else c["h2d"]
        lines.append(f"{phase:<14}{c['launches']:>10}{c['allocations']:>13}{c['syncs']:>7}{h2d:>5}")
    lines.append("launches by kernel or CuPy routine (counted on a GPU: CUDA graph nodes by type):")
    for phase in PHASES:
        most = list(counts[phase]["kernels"].items())
        shown = ", ".join(f"{name} {n}" for name, n in most[:top]) + (", ..." if len(most) > top else "")
        lines.append(f"  {phase:<14}{shown}")
    return lines


# -- as a suite of ``python -m benchmarks`` ------------------------------------------------------------
def run(settings):
    """The counts per phase at the suite's DeepConvNet batch size: on the GPU when the cuda backend is
    measured (CUDA graph capture), else on the emulated device."""
    batch = settings.batch("deep_convnet")
    if "cuda" in settings.backends:
        from xpnet import backends

        be = backends.get("cuda")
        try:
            return {"batch_size": batch, "device": f"{be.device}, counted by CUDA graph capture",
                    "counts": gpu_step_counts(be, batch)}
        except Exception as e:  # say why, then count on the emulated device
            failed = f"counting on {be.device} failed ({type(e).__name__}: {str(e)[:300]}); "
    else:
        failed = ""
    return {"batch_size": batch, "device": f"{failed}emulated CUDA device (tests/emulated_cupy)",
            "counts": step_counts(batch)}


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

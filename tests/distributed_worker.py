"""Run by test_distributed.py under ``mpiexec -n N python distributed_worker.py MODE OUT``.

Modes:
    train: a few steps of an MLP (each rank initialised with a different seed, so only the broadcast
        makes them agree) with the given per-rank batch; every rank saves its parameters to
        ``OUT/rank<r>.npz``.
    fail: rank 1 raises; the others wait in a barrier that would never complete without the abort
        (rank 0 touches ``OUT/rank0_waiting`` before it and ``OUT/rank0_past_barrier`` after).

Environment: BATCH (per-rank batch, default 50); BACKEND=cuda trains on this rank's GPU: NCCL=1 with
NCCL, NCCL=0 MPI staged through host memory, unset: --grad-path auto; rank 0 writes the path used to
``OUT/path.txt``.
"""

import os
import sys

import numpy as np

from xpnet import backends, optim
from xpnet.distributed import abort_on_exception, init
from xpnet.models import MLP
from xpnet.training import Trainer


def dataset(n, seed):
    """Four classes: which quarter of 16 features is raised."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, n)
    x = rng.random((n, 16), dtype=np.float32) * 0.3
    for k in range(4):
        x[t == k, 4 * k : 4 * (k + 1)] += 0.7
    return x, t


def train(world, batch_size, epochs=2, seed=None, backend="numpy"):
    """Train the checks' MLP; returns the model and trainer. ``seed`` defaults to one per rank."""
    seed = world.rank if seed is None and world is not None else (seed or 0)
    model = MLP(input_size=16, hidden_size_list=[12], output_size=4, seed=seed, backend=backend)
    trainer = Trainer(model, optim.Adam(lr=0.01), dataset(200, 0), dataset(40, 1), epochs=epochs,
                      batch_size=batch_size, seed=3, progress=False, world=world)
    trainer.fit()
    return model, trainer


def main(mode, out):
    world = init()
    with abort_on_exception(world):
        if mode == "train":
            backend = os.environ.get("BACKEND", "numpy")
            if backend == "cuda":
                world.use_local_gpu()
                world.bind(backends.get("cuda"), path={"0": "staged", "1": "nccl"}.get(os.environ.get("NCCL"), "auto"))
            model, trainer = train(world, batch_size=int(os.environ.get("BATCH", "50")), backend=backend)
            if world.is_root and world.engine is not None:
                with open(os.path.join(out, "path.txt"), "w") as f:
                    f.write(world.engine.path)
            np.savez(os.path.join(out, f"rank{world.rank}.npz"), **model.state_dict())
            if world.is_root:
                np.savez(os.path.join(out, "history.npz"), test_acc=trainer.history[-1]["test_acc"],
                         train_loss=trainer.history[-1]["train_loss"])
        elif mode == "fail":
            if world.rank == 1:
                raise RuntimeError("rank one failed on purpose")
            if world.rank == 0:
                open(os.path.join(out, "rank0_waiting"), "w").close()
            world.barrier()
            if world.rank == 0:
                open(os.path.join(out, "rank0_past_barrier"), "w").close()
        else:
            raise ValueError(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

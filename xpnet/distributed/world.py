"""The MPI world: rank, size and local rank, the GPU of this rank, and the collective engine."""

import math
import os

import numpy as np

from xpnet.distributed.engines import make_engine
from xpnet.distributed.mpi import INSTALL, DistributedError, load_mpi

# Launchers' per-node rank variables: Open MPI, MPICH/Hydra, Slurm, torchrun-style.
LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK")


def local_rank_from_env(comm=None, environ=None):
    """This rank's index among the ranks on its node: from the launcher's variables, else from MPI."""
    environ = os.environ if environ is None else environ
    for var in LOCAL_RANK_VARS:
        if environ.get(var, "").strip().isdigit():
            return int(environ[var])
    if comm is None:
        return 0
    MPI = load_mpi()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


class World:
    """This process's place in the job.

    Attributes:
        comm: the mpi4py communicator (``COMM_WORLD``). rank, size: this rank and the number of ranks.
        local_rank: the rank within this node (picks the GPU). is_root: rank 0, which alone logs,
        evaluates and writes files. engine: the collective engine (set by :meth:`bind`).
    """

    def __init__(self, comm, local_rank=None):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.local_rank = local_rank_from_env(comm) if local_rank is None else int(local_rank)
        self.is_root = self.rank == 0
        self.engine = None

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    def use_local_gpu(self):
        """Make GPU ``local_rank % count`` current before the CUDA backend starts; returns its id or None."""
        from xpnet import backends

        return backends.select_device(self.local_rank)

    def bind(self, backend, path="auto"):
        """Choose the collective engine for arrays of ``backend``; returns it (``engine.path`` says which).

        ``path``: ``auto``, ``nccl`` or ``staged`` (GPU arrays; see :func:`~xpnet.distributed.engines.make_engine`).
        """
        self.engine = make_engine(self.comm, backend, path=path)
        return self.engine

    def bcast_object(self, obj):
        """Rank 0's ``obj`` on every rank (small Python objects: paths, configs)."""
        return self.comm.bcast(obj, root=0)

    def sum(self, values):
        """Elementwise sum of a list of floats over the ranks (once per epoch, for metrics)."""
        MPI = load_mpi()
        total = np.array([float(v) for v in values], dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
        return total.tolist()

    def barrier(self):
        self.comm.Barrier()


def init():
    """The world of this process (MPI starts here); a single-process run is a world of size 1.

    Raises:
        DistributedError: mpi4py is missing or MPI cannot start.
    """
    MPI = load_mpi()
    try:
        comm = MPI.COMM_WORLD
        comm.Get_size()
    except Exception as e:
        raise DistributedError(f"MPI could not start ({type(e).__name__}: {e}); {INSTALL}") from None
    return World(comm)


def scale_lr(lr, size, rule):
    """The learning rate for ``size`` ranks: ``none`` keeps ``lr``, ``linear`` multiplies by size
    (Goyal et al. 2017), ``sqrt`` by sqrt(size) (Krizhevsky 2014; often better for Adam)."""
    if rule == "none":
        return lr
    if rule == "linear":
        return lr * size
    if rule == "sqrt":
        return lr * math.sqrt(size)
    raise ValueError(f"--scale-lr must be none, linear or sqrt, got {rule!r}")

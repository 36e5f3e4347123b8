"""Data-parallel training over MPI (mpi4py), with NCCL between GPUs: launch with ``mpiexec -n N``.

One process (rank) per CPU or GPU; every rank holds the whole model, reads its own shard of each
global batch, and the ranks average their gradients with one in-place allreduce per step, so every
rank applies the same update and the parameters stay identical. See ``docs/distributed.md``.
"""

from xpnet.distributed.abort import abort_on_exception
from xpnet.distributed.gradients import GradientAverager
from xpnet.distributed.parallel import DataParallel
from xpnet.distributed.world import World, init, scale_lr

__all__ = ["DataParallel", "GradientAverager", "World", "abort_on_exception", "init", "scale_lr"]

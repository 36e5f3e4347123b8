"""Collective engines: in-place allreduce (sum) and broadcast of one contiguous 1-d buffer.

Three paths, chosen by :func:`make_engine` and named by ``engine.path``:

* ``mpi`` — NumPy buffers, MPI ``Allreduce(IN_PLACE)`` straight on host memory.
* ``nccl`` — CuPy buffers, NCCL on the current stream; its unique id travels over MPI.
* ``mpi-staged`` — CuPy buffers without NCCL: copy to a host buffer, MPI, copy back.
"""

import numpy as np

from xpnet.distributed.mpi import DistributedError, load_mpi


class MPIEngine:
    """Host buffers over MPI."""

    path = "mpi"

    def __init__(self, comm):
        self.comm, self.MPI = comm, load_mpi()

    def describe(self):
        return f"MPI ({self.MPI.Get_library_version().split(',')[0].strip()}) on host memory"

    def allreduce_(self, buf):
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def bcast_(self, buf, root=0):
        self.comm.Bcast(buf, root=root)
        return buf


class StagedEngine(MPIEngine):
    """CuPy buffers over MPI, staged through a reusable host buffer (pinned where CuPy allows)."""

    path = "mpi-staged"

    def __init__(self, comm, cupy):
        super().__init__(comm)
        self.cupy = cupy
        self._host = {}

    def describe(self):
        return f"{super().describe()}, GPU buffers staged through host memory (no NCCL)"

    def _staging(self, buf):
        key = (buf.size, buf.dtype.str)
        if key not in self._host:
            try:
                import cupyx

                self._host[key] = cupyx.empty_pinned(buf.size, dtype=buf.dtype)
            except Exception:  # pinned memory refused: pageable works, only slower
                self._host[key] = np.empty(buf.size, buf.dtype)
        return self._host[key]

    def allreduce_(self, buf):
        host = self._staging(buf)
        buf.get(out=host)  # synchronous: the stream's work on buf is done
        super().allreduce_(host)
        buf.set(host)
        return buf

    def bcast_(self, buf, root=0):
        host = self._staging(buf)
        buf.get(out=host)
        super().bcast_(host, root)
        buf.set(host)
        return buf


class NCCLEngine:
    """CuPy buffers over NCCL (one communicator for the job, built from an id rank 0 broadcasts)."""

    path = "nccl"

    def __init__(self, comm, cupy):
        from cupy.cuda import nccl

        self.cupy, self.nccl = cupy, nccl
        uid = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                       np.dtype(np.float16): nccl.NCCL_FLOAT16}

    def describe(self):
        return f"NCCL {self.nccl.get_version()} GPU to GPU"

    def _dtype(self, buf):
        if buf.dtype not in self._types:
            raise DistributedError(f"NCCL: unsupported buffer dtype {buf.dtype}")
        return self._types[buf.dtype]

    def allreduce_(self, buf):
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), self.nccl.NCCL_SUM, stream)
        return buf

    def bcast_(self, buf, root=0):
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(buf.data.ptr, buf.size, self._dtype(buf), root, stream)
        return buf


def _nccl_usable():
    """True when CuPy was built with NCCL and the library loads."""
    try:
        from cupy.cuda import nccl

        nccl.get_version()
    except Exception:
        return False
    return True


def make_engine(comm, backend, prefer_nccl=True):
    """The engine for arrays of ``backend`` (host memory: MPI; a GPU: NCCL, else MPI staged).

    The choice is collective: NCCL is used only if every rank has it, so no rank waits on another path.
    """
    if backend.host_memory:
        return MPIEngine(comm)
    cupy = backend.xp
    have = bool(prefer_nccl and _nccl_usable())
    MPI = load_mpi()
    everyone = comm.allreduce(int(have), op=MPI.MIN) == 1
    return NCCLEngine(comm, cupy) if everyone else StagedEngine(comm, cupy)

"""Collective engines: in-place allreduce (sum) and broadcast of one contiguous 1-d buffer.

Three paths, chosen by :func:`make_engine` and named by ``engine.path``:

* ``mpi`` — host arrays (NumPy), MPI ``Allreduce(IN_PLACE)`` straight on them.
* ``nccl`` — GPU arrays, NCCL on the current stream; its unique id travels over MPI.
* ``mpi-staged`` — GPU arrays without NCCL: copy to a host buffer, MPI, copy back.

Every device operation goes through the backend's collective methods (``host_buffer``, ``copy_to_host``,
``copy_from_host``, ``device_key``, ``nccl_*``): ``backends/`` stays the only code that touches CuPy.
"""

import socket

from xpnet.distributed.mpi import DistributedError, load_mpi

PATHS = ("auto", "nccl", "staged")


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
    """Device buffers over MPI, staged through a reusable host buffer (pinned where the device allows).

    Args:
        comm: the mpi4py communicator. backend: the backend owning the buffers.
        why: why this path rather than NCCL (shown by :meth:`describe`), or None.
    """

    path = "mpi-staged"

    def __init__(self, comm, backend, why=None):
        super().__init__(comm)
        self.backend, self.why = backend, why
        self._host = {}

    def describe(self):
        return f"{super().describe()}, GPU buffers staged through host memory ({self.why or 'no NCCL'})"

    def _staging(self, buf):
        key = (buf.size, buf.dtype.str)
        if key not in self._host:
            self._host[key] = self.backend.host_buffer(buf.size, buf.dtype)
        return self._host[key]

    def allreduce_(self, buf):
        host = self.backend.copy_to_host(buf, self._staging(buf))  # synchronous: buf's queued work is done
        super().allreduce_(host)
        self.backend.copy_from_host(host, buf)
        return buf

    def bcast_(self, buf, root=0):
        host = self.backend.copy_to_host(buf, self._staging(buf))
        super().bcast_(host, root)
        self.backend.copy_from_host(host, buf)
        return buf


class NCCLEngine:
    """Device buffers over NCCL (one communicator for the job, built from an id rank 0 broadcasts)."""

    path = "nccl"

    def __init__(self, comm, backend):
        uid = backend.nccl_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)
        self.version = backend.nccl_version()
        self.nccl = backend.nccl_communicator(comm.Get_size(), uid, comm.Get_rank())

    def describe(self):
        return f"NCCL {self.version} GPU to GPU"

    def allreduce_(self, buf):
        return self.nccl.allreduce_(buf)

    def bcast_(self, buf, root=0):
        return self.nccl.bcast_(buf, root)


def survey(comm, backend):
    """``(every rank has NCCL, ["ranks 0, 1 share GPU <key> on <host>", ...])``: one allgather, collective.

    NCCL refuses two ranks on one GPU ("Duplicate GPU detected"); MPI staging does not mind.
    """
    reports = comm.allgather((socket.gethostname(), backend.device_key(), backend.nccl_version() is not None))
    ranks = {}
    for rank, (host, device, _) in enumerate(reports):
        ranks.setdefault((host, device), []).append(rank)
    shared = [f"ranks {', '.join(map(str, r))} share GPU {device} on {host}"
              for (host, device), r in ranks.items() if len(r) > 1]
    return all(has for _, _, has in reports), shared


def make_engine(comm, backend, path="auto"):
    """The engine for arrays of ``backend``: MPI for host arrays; for GPU arrays NCCL or MPI staged.

    Args:
        path: ``auto`` (NCCL when every rank has it and no two ranks share a GPU, else staged, saying
            why in ``describe()``), ``nccl`` (an error when it cannot work) or ``staged``.

    The choice is collective: every rank takes the same path, so no rank waits on another.

    Raises:
        ValueError: an unknown path, or ``nccl``/``staged`` for host arrays.
        DistributedError: ``nccl`` asked for where a rank lacks it or two ranks share a GPU.
    """
    if path not in PATHS:
        raise ValueError(f"--grad-path must be one of {', '.join(PATHS)}, got {path!r}")
    if backend.host_memory:
        if path != "auto":
            raise ValueError(f"--grad-path {path} is for GPU arrays; backend '{backend.name}' reduces over MPI "
                             "on host memory (use --backend cuda, or leave --grad-path auto)")
        return MPIEngine(comm)
    if path == "staged":
        return StagedEngine(comm, backend, "--grad-path staged")
    everyone, shared = survey(comm, backend)
    if everyone and not shared:
        return NCCLEngine(comm, backend)
    why = "NCCL needs one GPU per rank: " + "; ".join(shared) if shared else "NCCL is not usable on every rank"
    if path == "nccl":
        raise DistributedError(f"--grad-path nccl cannot work here: {why}; use --grad-path staged or auto")
    return StagedEngine(comm, backend, f"no NCCL: {why}")

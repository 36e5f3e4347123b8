"""What data-parallel training needs from the CUDA device: pinned staging, NCCL, the device's identity.

:mod:`xpnet.distributed` calls these through the backend (the same names on every backend, see
:class:`~xpnet.backends.Backend`), so CuPy stays inside ``backends/``.
"""

import numpy as np

from xpnet.errors import BackendError


def select_device(index):
    """Make CUDA device ``index % count`` current (before the CUDA backend starts); its id, None without CUDA."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy or no device: the backend reports it if CUDA was asked for
        return None
    if count < 1:
        return None
    device = int(index) % count
    cupy.cuda.Device(device).use()
    return device


def _nccl():
    """CuPy's NCCL module when CuPy was built with NCCL and the library loads, else None."""
    try:
        from cupy.cuda import nccl

        nccl.get_version()
    except Exception:
        return None
    return nccl


class NcclComm:
    """One NCCL communicator for the job: in-place sum-allreduce and broadcast of contiguous 1-d buffers,
    queued on the current stream."""

    def __init__(self, cupy, nccl, size, uid, rank):
        self._cp, self._nccl = cupy, nccl
        self.comm = nccl.NcclCommunicator(int(size), uid, int(rank))
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                       np.dtype(np.float16): nccl.NCCL_FLOAT16}

    def _dtype(self, buf):
        if buf.dtype not in self._types:
            raise BackendError(f"NCCL: unsupported buffer dtype {buf.dtype}; expected float16, float32 or float64")
        return self._types[buf.dtype]

    def allreduce_(self, buf):
        stream = self._cp.cuda.get_current_stream().ptr
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), self._nccl.NCCL_SUM, stream)
        return buf

    def bcast_(self, buf, root=0):
        stream = self._cp.cuda.get_current_stream().ptr
        self.comm.bcast(buf.data.ptr, buf.size, self._dtype(buf), root, stream)
        return buf


class CudaCollectives:
    """The CUDA backend's side of :class:`~xpnet.backends.base.Backend`'s collective methods (a mixin)."""

    def host_buffer(self, size, dtype):
        """A reusable host staging buffer: page-locked (faster copies) where the driver grants it."""
        try:
            import cupyx

            return cupyx.empty_pinned(int(size), dtype=dtype)
        except Exception:  # pinned memory refused: pageable works, only slower
            return np.empty(int(size), dtype)

    def copy_to_host(self, a, out):
        """Copy device array ``a`` into host array ``out``; returns when the stream's work on ``a`` is done."""
        a.get(out=out)
        return out

    def copy_from_host(self, host, a):
        """Copy host array ``host`` into device array ``a`` in place."""
        a.set(host)
        return a

    def device_key(self):
        """The physical device (its PCI bus id): two ranks with the same key on one node share a GPU."""
        return self.xp.cuda.Device().pci_bus_id

    def nccl_version(self):
        nccl = _nccl()
        return None if nccl is None else nccl.get_version()

    def nccl_unique_id(self):
        return self._nccl_or_raise().get_unique_id()

    def nccl_communicator(self, size, uid, rank):
        return NcclComm(self.xp, self._nccl_or_raise(), size, uid, rank)

    def _nccl_or_raise(self):
        nccl = _nccl()
        if nccl is None:
            raise BackendError("backend 'cuda': NCCL is not usable here (CuPy without NCCL, or libnccl missing); "
                               "install nvidia-nccl-cu12 / nvidia-nccl-cu13, or use --grad-path staged")
        return nccl

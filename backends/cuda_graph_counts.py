"""Launches and allocations of a piece of work on a real CUDA device, counted by CUDA and CuPy themselves
(``CudaBackend.launch_counter``; ``python -m benchmarks launches`` reports them on a GPU).

The work runs under stream capture (``cudaStreamBeginCapture`` through CuPy's ``Stream.begin_capture``):
every kernel, copy and memset it queues becomes a node of a CUDA graph, and the graph's nodes are
counted by type (``cudaGraphGetNodes``, ``cudaGraphNodeGetType``); the graph is then launched, so the
work runs too and the next piece sees its results. CuPy's memory hook counts requests to its memory
pool (what the emulated device counts as allocations). CUDA refuses a host sync while a stream is
capturing, so a piece of work that syncs fails here with CUDA's error instead of being counted: a
count from this module means no sync. cuBLAS may run a GEMM as more than one kernel: these counts are
what the GPU runs, the emulated device's are one per CuPy call.
"""

import collections
import contextlib
import ctypes

#: cudaGraphNodeType values (CUDA runtime API, driver_types.h)
NODE_TYPES = {0: "kernel", 1: "memcpy", 2: "memset", 3: "host", 4: "graph", 5: "empty", 6: "wait_event",
              7: "event_record", 8: "ext_semas_signal", 9: "ext_semas_wait", 10: "mem_alloc", 11: "mem_free",
              12: "batch_mem_op", 13: "conditional"}
#: node types that are work the device runs (what a launch count counts)
WORK = ("kernel", "memcpy", "memset", "host", "graph", "batch_mem_op")


def tally(types):
    """``(launches, {type: count})`` for a list of node type names (most frequent first)."""
    counts = collections.Counter(types)
    return sum(counts[t] for t in WORK), dict(counts.most_common())


class Counted:
    """What :meth:`GraphCounter.counting` counted (filled when its block ends)."""

    launches = allocations = 0
    syncs = 0  # the capture succeeded: CUDA would have refused a sync
    h2d = None  # host-to-device copies are not told apart from other copies here
    kernels = None

    def as_dict(self):
        return {"launches": self.launches, "allocations": self.allocations, "syncs": self.syncs, "h2d": self.h2d,
                "kernels": dict(self.kernels or {})}


class GraphCounter:
    """``with counter.counting() as c: ...`` on a real GPU, then ``c`` is a :class:`Counted` (``kernels``: the
    graph's nodes by type). The block runs on this counter's stream; run the work before it (warm-up
    steps) in ``with counter.stream:`` too."""

    def __init__(self, cupy):
        self.cp = cupy
        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
        self._rt = ctypes.CDLL(f"libcudart.so.{major}")  # the runtime CuPy has loaded
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def _check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cudaError {status}")

    def node_types(self, graph):
        """The type names of the nodes of a ``cudaGraph_t`` handle."""
        handle, n = ctypes.c_void_p(graph), ctypes.c_size_t(0)
        self._check(self._rt.cudaGraphGetNodes(handle, None, ctypes.byref(n)), "cudaGraphGetNodes")
        nodes = (ctypes.c_void_p * n.value)()
        self._check(self._rt.cudaGraphGetNodes(handle, nodes, ctypes.byref(n)), "cudaGraphGetNodes")
        types = []
        for node in nodes[:n.value]:
            kind = ctypes.c_int(-1)
            self._check(self._rt.cudaGraphNodeGetType(ctypes.c_void_p(node), ctypes.byref(kind)),
                        "cudaGraphNodeGetType")
            types.append(NODE_TYPES.get(kind.value, f"type {kind.value}"))
        return types

    @contextlib.contextmanager
    def counting(self):
        memory_hook = self.cp.cuda.memory_hook
        requests = []

        class PoolRequests(memory_hook.MemoryHook):
            name = "xpnet_pool_requests"

            def malloc_preprocess(self, **kwargs):
                requests.append(kwargs.get("size"))

        result = Counted()
        with self.stream, PoolRequests():
            self.stream.begin_capture()
            try:
                yield result
            except BaseException:
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            graph = self.stream.end_capture()
        result.launches, result.kernels = tally(self.node_types(graph.graph))
        result.allocations = len(requests)
        graph.launch(stream=self.stream)
        self.stream.synchronize()

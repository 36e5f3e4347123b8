"""Run settings shared by the suites: sizes, repeats, backends, where results go.

Full sizes are the published ones (AlexNet 3x227x227, DeepConvNet 1x28x28). ``--quick`` shrinks
everything so the whole of ``all`` finishes in seconds on a laptop CPU: it checks the benchmarks
still run, and its numbers mean nothing.
"""

from dataclasses import dataclass, field

ALEXNET_FULL, ALEXNET_QUICK = (3, 227, 227), (3, 67, 67)  # 67x67: the smallest input AlexNet accepts
DEEP_INPUT = (1, 28, 28)
DEFAULT_BATCH = {"alexnet": 32, "deep_convnet": 100}
QUICK_BATCH = {"alexnet": 2, "deep_convnet": 4}
TRAIN_BATCHES, TRAIN_QUICK_BATCHES = (32, 100, 256), (4,)
INFER_BATCHES = (100, 1000)
GEMM_N = {"numpy": 2048, "cuda": 8192}
GEMM_QUICK_N = 256


@dataclass
class Settings:
    """What the user asked for on the command line.

    Attributes:
        backends: names to measure, in order (``"numpy"`` and/or ``"cuda"``).
        unavailable: ``{backend: reason}`` for backends unusable on this machine (CUDA without CuPy...).
        quick: tiny sizes and repeats. repeats, warmup: None picks the suite's default.
        batch_sizes: from ``--batch-sizes``; None picks the defaults.
        compare: ``"torch"`` or None. json_path, plots_dir: outputs (None: not written).
    """

    backends: list
    unavailable: dict = field(default_factory=dict)
    quick: bool = False
    repeats: int = None
    warmup: int = None
    batch_sizes: list = None
    compare: str = None
    json_path: str = None
    plots_dir: str = None

    def n_repeats(self, full):
        """Timed repeats: ``--repeats``, else 2 when quick, else the suite's ``full`` default."""
        if self.repeats is not None:
            return self.repeats
        return 2 if self.quick else full

    def n_warmup(self, full=2):
        return self.warmup if self.warmup is not None else (1 if self.quick else full)

    def alexnet_input(self):
        return ALEXNET_QUICK if self.quick else ALEXNET_FULL

    def batch(self, model):
        """Batch size of the breakdown and conv suites: the first ``--batch-sizes`` value, else a default."""
        if self.batch_sizes:
            return self.batch_sizes[0]
        return (QUICK_BATCH if self.quick else DEFAULT_BATCH)[model]

    def train_batches(self):
        if self.batch_sizes:
            return list(self.batch_sizes)
        return list(TRAIN_QUICK_BATCHES if self.quick else TRAIN_BATCHES)

    def infer_batches(self):
        if self.batch_sizes:
            return list(self.batch_sizes)
        return list(TRAIN_QUICK_BATCHES if self.quick else INFER_BATCHES)

    def gemm_n(self, backend):
        return GEMM_QUICK_N if self.quick else GEMM_N.get(backend, 2048)

    def as_dict(self):
        return {"backends": self.backends, "unavailable": self.unavailable, "quick": self.quick,
                "repeats": self.repeats, "warmup": self.warmup, "batch_sizes": self.batch_sizes,
                "compare": self.compare}

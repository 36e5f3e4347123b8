"""xpnet.profile: per-layer rows and per-type sums on tiny models; AlexNet's layers and registry entry."""

import types

import numpy as np
import pytest
from tolerance import assert_close

from xpnet.layers import (
    Affine,
    BatchNorm,
    Conv2D,
    Dropout,
    Flatten,
    LocalResponseNormalization,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
)
from xpnet.layers.base import Layer
from xpnet.models import REGISTRY, AlexNet, DeepConvNet, build
from xpnet.profile import TYPES, layer_type, profile, summarize

TIME_KEYS = ("forward_ms", "forward_min_ms", "forward_max_ms", "backward_ms", "backward_min_ms", "backward_max_ms")


def tiny_net(backend):
    rng = np.random.default_rng(0)
    return Sequential(
        ("conv", Conv2D(2, 4, 3, pad=1, rng=rng, backend=backend)),
        ("relu", ReLU()),
        ("lrn", LocalResponseNormalization()),
        ("pool", MaxPool2D(2, 2)),
        ("fc", Affine(4 * 3 * 3, 5, rng=rng, backend=backend)),
        ("drop", Dropout(0.5, seed=1)),
    )


def assert_sane(row):
    for phase in ("forward", "backward"):
        low, mid, high = row[f"{phase}_min_ms"], row[f"{phase}_ms"], row[f"{phase}_max_ms"]
        assert 0.0 <= low <= mid <= high, row


def test_rows_of_a_sequential(backend, rng):
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    rows = profile(tiny_net(backend), x, repeats=3, warmup=1)
    assert [r["name"] for r in rows] == ["conv", "relu", "lrn", "pool", "fc", "drop"]
    assert [r["type"] for r in rows] == ["conv", "relu", "norm", "pool", "fc", "dropout"]
    assert rows[0]["output_shape"] == [3, 4, 6, 6] and rows[-1]["output_shape"] == [3, 5]
    assert rows[2]["layer"] == "LocalResponseNormalization"
    for row in rows:
        assert set(TIME_KEYS) <= set(row)
        assert_sane(row)


def test_model_rows_include_the_loss(backend, rng):
    model = DeepConvNet()
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    rows = profile(model, x, np.array([1, 7]), repeats=2, warmup=0)
    assert [r["name"] for r in rows] == [*model.net.layers, "loss"]
    assert rows[-1]["type"] == "other" and rows[-1]["output_shape"] == []
    assert all(r["backward_ms"] is not None for r in rows)
    assert set(model.grads) == set(model.params)  # backward really ran


def test_forward_only_has_no_backward_times(rng):
    rows = profile(tiny_net("numpy"), rng.standard_normal((1, 2, 6, 6)), backward=False, repeats=1, warmup=0)
    assert all(r["backward_ms"] is None and r["backward_max_ms"] is None for r in rows)
    by_type = summarize(rows)
    assert all(r["backward_share"] is None for r in by_type)
    assert_close(sum(r["forward_share"] for r in by_type), 1.0, terms=2 * len(rows))  # fractions of one sum


def test_summarize_groups_by_type_in_fixed_order(rng):
    rows = profile(tiny_net("numpy"), rng.standard_normal((2, 2, 6, 6)).astype(np.float32), repeats=2, warmup=1)
    by_type = summarize(rows)
    assert [r["type"] for r in by_type] == ["conv", "fc", "pool", "norm", "relu", "dropout"]
    assert all(r["layers"] == 1 for r in by_type)
    assert_close(sum(r["forward_share"] for r in by_type), 1.0, terms=2 * len(rows))
    assert_close(sum(r["backward_share"] for r in by_type), 1.0, terms=2 * len(rows))
    conv = next(r for r in by_type if r["type"] == "conv")
    assert conv["forward_ms"] == rows[0]["forward_ms"]  # the one conv layer's own time


def test_layer_type_buckets():
    assert TYPES == ("conv", "fc", "pool", "norm", "relu", "dropout", "other")
    assert layer_type(BatchNorm(3)) == "norm"
    assert layer_type(Sigmoid()) == "other" and layer_type(Flatten()) == "other"

    class MyConv(Conv2D):
        pass

    assert layer_type(MyConv(1, 1, 1)) == "conv"


def test_rejects_bad_repeats():
    with pytest.raises(ValueError):
        profile(tiny_net("numpy"), np.zeros((1, 2, 6, 6), np.float32), repeats=0)
    with pytest.raises(TypeError):
        profile(ReLU(), np.zeros((1, 2), np.float32))


def test_alexnet_layers_and_shapes_at_the_smallest_input(backend, rng):
    model = AlexNet(input_dim=(3, 67, 67))
    rows = profile(model, rng.random((1, 3, 67, 67), dtype=np.float32), backward=False, repeats=1, warmup=0)
    shapes = {r["name"]: r["output_shape"] for r in rows}
    assert shapes["conv1"] == [1, 96, 15, 15] and shapes["pool1"] == [1, 96, 7, 7]
    assert shapes["conv2"] == [1, 256, 7, 7] and shapes["pool2"] == [1, 256, 3, 3]
    assert shapes["pool5"] == [1, 256, 1, 1] and shapes["fc8"] == [1, 1000]
    counts = {t: sum(r["type"] == t for r in rows) for t in TYPES}
    assert counts == {"conv": 5, "fc": 3, "pool": 3, "norm": 2, "relu": 7, "dropout": 2, "other": 0}


def test_alexnet_parameter_count_and_registry():
    convs = 96 * 3 * 121 + 256 * 96 * 25 + 384 * 256 * 9 + 384 * 384 * 9 + 256 * 384 * 9 + 96 + 256 + 384 + 384 + 256
    fcs = (256 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert AlexNet(input_dim=(3, 67, 67)).num_params() == convs + fcs
    assert REGISTRY["alexnet"] is AlexNet
    small = build("alexnet", input_dim=(3, 67, 67), output_size=7, hidden_size=16)
    assert small.config["output_size"] == 7 and small.predict(np.zeros((2, 3, 67, 67), np.float32)).shape == (2, 7)
    with pytest.raises(Exception, match="too small"):
        AlexNet(input_dim=(3, 66, 66))


# -- what a GPU profile measures: device time, not launch time ----------------------------------------------
LAUNCH_MS, KERNEL_MS = 0.005, 0.001  # a launch costs the host 5 us; these kernels take the GPU 1 us


class _AsyncGpu:
    """A GPU's timing model: the host queues kernels (each launch costs it LAUNCH_MS), the stream runs them
    in order as soon as they are queued and it is free; an event completes when the stream reaches it."""

    def __init__(self, boost=1.0):
        self.host = self.free_at = 0.0
        self.boost, self.spins = boost, 0  # after calibrating (two spins) the clock rises ``boost`` times

    def launch(self, ms):
        self.host += LAUNCH_MS
        self.free_at = max(self.free_at, self.host) + ms

    def stand_in(self):
        """The CuPy names CudaBackend.timeline uses, over this model."""
        gpu = self

        class Event:
            def record(self, stream=None):
                self.t = max(gpu.free_at, gpu.host)

            @property
            def done(self):
                return self.t <= gpu.host

            def synchronize(self):
                gpu.host = max(gpu.host, self.t)

        def spin(n, out):
            gpu.spins += 1
            gpu.launch(n * 1e-6 / (gpu.boost if gpu.spins > 2 else 1.0))  # a million iterations a millisecond

        def kernel(*spec):  # only the spin kernel is ever launched here
            return spin

        cuda = types.SimpleNamespace(Event=Event, get_elapsed_time=lambda a, b: b.t - a.t)
        return types.SimpleNamespace(ElementwiseKernel=kernel, zeros=lambda *a, **k: None, float32=np.float32,
                                     ones=lambda shape, dtype: np.ones(shape, dtype).view(_DeviceArray), cuda=cuda)


class _Kernels(Layer):
    """A layer that launches ``count`` 1-us kernels each way (and, with ``sync``, then waits for the GPU)."""

    def __init__(self, gpu, count, sync=False):
        super().__init__()
        self.gpu, self.count, self.sync = gpu, count, sync

    def _run(self, x):
        for _ in range(self.count):
            self.gpu.launch(KERNEL_MS)
        if self.sync:
            self.gpu.host = max(self.gpu.host, self.gpu.free_at)
        return x

    def forward(self, x, train=False):
        return self._run(x)

    def backward(self, dout):
        return self._run(dout)


class _DeviceArray(np.ndarray):
    __module__ = "cupy._stand_in"  # backends.of() takes it for a CuPy array


@pytest.mark.parametrize("boost", [1.0, 100.0], ids=["steady-clock", "clock-rises-after-calibration"])
def test_gpu_profile_times_the_kernels_not_their_launches(monkeypatch, boost):
    from xpnet import backends
    from xpnet.backends import cuda_kernels
    from xpnet.backends.cuda_backend import CudaBackend

    gpu = _AsyncGpu(boost)
    be = object.__new__(CudaBackend)  # the real timeline code over the timing model above
    be.xp = gpu.stand_in()
    be._kernels = cuda_kernels.build(be.xp)
    monkeypatch.setitem(backends._instances, "cuda", be)
    x = np.zeros(2, np.float32).view(_DeviceArray)
    rows = {r["name"]: r for r in profile(Sequential(("a", _Kernels(gpu, 10)), ("b", _Kernels(gpu, 3))), x,
                                          repeats=2, warmup=1)}
    # 10 kernels of 1 us take the GPU 10 us; their launches took the host 50 us, which it does not count
    for name, count in (("a", 10), ("b", 3)):
        assert rows[name]["forward_ms"] == pytest.approx(count * KERNEL_MS)
        assert rows[name]["backward_ms"] == pytest.approx(count * KERNEL_MS)
        assert rows[name]["device_only"]
    # a layer that waits for the GPU drains the queue: it and the layers after it show their launch gaps
    net = Sequential(("a", _Kernels(gpu, 10)), ("sync", _Kernels(gpu, 2, sync=True)), ("after", _Kernels(gpu, 4)))
    rows = {r["name"]: r for r in profile(net, x, backward=False, repeats=2, warmup=1)}
    assert rows["a"]["device_only"] and rows["a"]["forward_ms"] == pytest.approx(10 * KERNEL_MS)
    assert not rows["sync"]["device_only"] and not rows["after"]["device_only"]
    assert rows["after"]["forward_ms"] == pytest.approx(4 * LAUNCH_MS + KERNEL_MS)  # launches, then the last kernel

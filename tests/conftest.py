"""Shared fixtures: ``backend`` runs a test on NumPy and on CUDA: a real GPU when one is usable, else the
emulated device (``tests/emulated_cupy``), so the CUDA backend's code runs in CI too."""

import contextlib
import os
import sys
import types

import numpy as np
import pytest
from emulated_cupy import device
from emulated_cupy.kernels import host_compiler_problem

from xpnet import backends
from xpnet.backends import cpu_kernels, numpy_split
from xpnet.backends.cpu_threads import BatchSplitter


def _cuda_usable():
    return "cuda" in backends.available()


REAL_GPU = _cuda_usable()
# Without a GPU the cuda cases run on the emulated device, which compiles kernels with g++.
NO_CUDA = None if REAL_GPU else host_compiler_problem()
NO_CUDA_REASON = f"no usable GPU, and the emulated device cannot compile kernels here ({NO_CUDA})"
if NO_CUDA and os.environ.get("XPNET_REQUIRE_CUDA_CHECKS") == "1":  # CI: the cuda cases must not skip
    raise RuntimeError(NO_CUDA_REASON)


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        cuda = pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(bool(NO_CUDA), reason=NO_CUDA_REASON))
        params = [pytest.param("numpy", id="numpy"), cuda]
        metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request):
    """The Backend object for this parametrisation, made current for the test's duration.

    ``cuda`` without a usable GPU is the emulated device: for the test's duration it is xpnet's cuda
    backend and ``import cupy`` gives the emulated module.
    """
    emulate = request.param == "cuda" and not REAL_GPU
    with device.as_cuda() if emulate else contextlib.nullcontext(), backends.use(request.param) as be:
        yield be


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def cuda():
    """The CUDA backend: a real GPU when one is usable, else the emulated device (as for ``backend``)."""
    if NO_CUDA:
        pytest.skip(NO_CUDA_REASON)
    with contextlib.nullcontext(backends.get("cuda")) if REAL_GPU else device.as_cuda() as be:
        yield be


@pytest.fixture
def real_gpu():
    """The CUDA backend on a real GPU, or a clean skip: for tests the emulated device cannot stand in for
    (other processes, NCCL); use with @pytest.mark.gpu."""
    if not REAL_GPU:
        pytest.skip("needs a real GPU (CUDA backend unavailable: no CuPy or no GPU)")
    return backends.get("cuda")


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a stand-in ``cupy`` module that imports but has no usable device.

    Call it with the device count to report, or an exception for ``getDeviceCount`` to raise; the
    cached cuda backend is dropped so the next lookup goes through the stand-in.
    """

    def install(devices):
        def count():
            if isinstance(devices, BaseException):
                raise devices
            return devices

        fake = types.ModuleType("cupy")
        fake.__version__ = "13.0.0"
        fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
        monkeypatch.setitem(sys.modules, "cupy", fake)
        monkeypatch.setattr(backends, "_instances", {k: v for k, v in backends._instances.items() if k != "cuda"})
        return fake

    return install


@pytest.fixture(params=["vector", "portable"])
def kernels(request, monkeypatch):
    """The compiled CPU kernels' AVX-512 code, then their portable loops (tests/test_cpu_kernels.py,
    tests/test_cpu_batchnorm.py); every pooling window through them, not only the vectorised 2x2/2."""
    if cpu_kernels.use_vector(request.param == "vector") != (request.param == "vector"):
        pytest.skip("this CPU has no AVX-512F")
    monkeypatch.setattr(cpu_kernels, "ANY_WINDOW", True)
    yield request.param
    cpu_kernels.use_vector(True)


@pytest.fixture(params=[1, 3], ids=["one-thread", "three-slices"])
def split(request, monkeypatch):
    """A BatchSplitter of one thread, then of three with any slice worth a thread (numpy_split.MIN_SLICE 1)."""
    s = BatchSplitter(threads=request.param)
    if request.param > 1:
        monkeypatch.setattr(numpy_split, "MIN_SLICE", 1)
        if s.threads == 1:
            pytest.skip("no BLAS whose thread count threadpoolctl can set: the split is off")
    return s

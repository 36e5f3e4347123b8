"""Shared fixtures: ``backend`` runs a test on NumPy and on CUDA: a real GPU when one is usable, else the
emulated device (``tests/emulated_cupy``), so the CUDA backend's code runs in CI too."""

import sys
import types

import numpy as np
import pytest

from xpnet import backends


def _cuda_usable():
    return "cuda" in backends.available()


REAL_GPU = _cuda_usable()
_emulated = []


def emulated_cuda():
    """The CUDA backend over the emulated device (made once; its compiled kernels are cached on disk)."""
    if not _emulated:
        import emulated_cupy

        from xpnet.backends.cuda_backend import CudaBackend

        _emulated.append(CudaBackend(cupy=emulated_cupy))
    return _emulated[0]


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        params = [pytest.param("numpy", id="numpy"), pytest.param("cuda", id="cuda")]
        metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request, monkeypatch):
    """The Backend object for this parametrisation, made current for the test's duration.

    ``cuda`` without a usable GPU is the emulated device: for the test's duration it is xpnet's cuda
    backend and ``import cupy`` gives the emulated module.
    """
    if request.param == "cuda" and not REAL_GPU:
        be = emulated_cuda()
        monkeypatch.setitem(backends._instances, "cuda", be)
        monkeypatch.setitem(sys.modules, "cupy", be.xp)
    with backends.use(request.param) as be:
        yield be


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def cuda():
    """The CUDA backend, or a clean skip; use with @pytest.mark.gpu."""
    if not _cuda_usable():
        pytest.skip("CUDA backend unavailable (no CuPy or no GPU)")
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

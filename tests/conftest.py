"""Shared fixtures: ``backend`` runs a test once per available backend; GPU cases carry the gpu mark."""

import sys
import types

import numpy as np
import pytest

from xpnet import backends


def _cuda_usable():
    return "cuda" in backends.available()


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        params = [
            pytest.param("numpy", id="numpy"),
            pytest.param("cuda", id="cuda", marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not _cuda_usable(), reason="CUDA backend unavailable (no CuPy or no GPU)"),
            ]),
        ]
        metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request):
    """The Backend object for this parametrisation, made current for the test's duration."""
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

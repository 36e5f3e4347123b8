"""Shared fixtures: ``backend`` runs a test once per available backend; GPU cases carry the gpu mark."""

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

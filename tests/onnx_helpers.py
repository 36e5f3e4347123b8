"""The optional onnx and onnxruntime packages for the ONNX tests: a clean skip without them, except in CI."""

import importlib
import os

import pytest


def require(name):
    """Import ``name``; skip the test when it is missing, unless XPNET_REQUIRE_ONNX_CHECKS=1 (CI) makes that fail."""
    if os.environ.get("XPNET_REQUIRE_ONNX_CHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)

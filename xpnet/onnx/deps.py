"""The optional ``onnx`` and ``onnxruntime`` packages, imported when first needed."""

import importlib

from xpnet.errors import XpnetError

INSTALL = 'pip install "xpnet[onnx]"'


class OnnxUnavailableError(XpnetError, ImportError):
    """``onnx`` or ``onnxruntime`` is not installed (or does not import)."""


def require(name):
    """Import and return ``name`` (``"onnx"`` or ``"onnxruntime"``), or raise one line saying what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise OnnxUnavailableError(f"ONNX export and evaluation need the packages onnx and onnxruntime; "
                                   f"{name} is not usable here ({e}); install them with: {INSTALL}") from None

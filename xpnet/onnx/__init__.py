"""ONNX export (:func:`export`, ``model.to_onnx``) and evaluation through onnxruntime (:class:`OnnxModel`).

Needs the optional packages onnx and onnxruntime (``pip install "xpnet[onnx]"``); they are imported
when first used, so ``import xpnet.onnx`` works without them.
"""

from xpnet.onnx.converters import CONVERTERS, converter
from xpnet.onnx.deps import INSTALL, OnnxUnavailableError
from xpnet.onnx.export import IR_VERSION, OPSET, export, metadata, to_proto
from xpnet.onnx.runtime import OnnxModel, compare

__all__ = ["CONVERTERS", "INSTALL", "IR_VERSION", "OPSET", "OnnxModel", "OnnxUnavailableError", "compare", "converter",
           "export", "metadata", "to_proto"]

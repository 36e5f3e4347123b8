"""Export a Model to an ONNX file: graph, dynamic batch axis, opset, and xpnet's metadata."""

import json
import os

import numpy as np

from xpnet.errors import ExportError
from xpnet.fileio import atomic_write
from xpnet.onnx.converters import convert
from xpnet.onnx.deps import require
from xpnet.onnx.graph import GraphBuilder

OPSET = 17  # onnx 1.12 (2022): old enough for most deployed runtimes; every op used here is in it
IR_VERSION = 8  # the IR version that introduced opset 17: readers as old as that runtime accept the file
INPUT, OUTPUT, BATCH = "input", "logits", "batch"
PRODUCER = "xpnet"


def example_shape(model):
    """One example's shape: ``model.input_shape`` ((C, H, W), or (D,) for a flat input)."""
    if model.input_shape is None:
        raise ExportError(f"{type(model).__name__}: its input shape is not known (input_shape=None); pass "
                          f"input_shape=(C, H, W) to export it")
    return tuple(model.input_shape)


def metadata(model):
    """The ``metadata_props`` written into the file: architecture, config, dtype, xpnet version, content hash."""
    from xpnet import __version__
    from xpnet.serialization import content_sha256

    return {"xpnet.arch": model.arch, "xpnet.config": json.dumps(model.config, sort_keys=True),
            "xpnet.dtype": str(np.dtype(model.dtype)), "xpnet.version": __version__,
            # the same hash as in the model's .npz: it ties the ONNX file to the weights it came from
            "xpnet.sha256": content_sha256(model), "xpnet.opset": str(OPSET)}


def to_proto(model, batch=None, input_shape=None):
    """Build the ONNX ModelProto of ``model`` (inference mode: running BatchNorm statistics, no dropout).

    Args:
        model: an :class:`xpnet.models.Model` on any backend.
        batch: a fixed batch size, or None for a dynamic batch axis named ``"batch"``.
        input_shape: one example's shape, for a model built without one.

    Returns:
        ``onnx.ModelProto`` with input ``"input"`` (batch, *example shape) and output ``"logits"``
        (batch, classes), both in the model's dtype.

    Raises:
        ExportError: a layer without a converter (named by its dotted path), or no known input shape.
        OnnxUnavailableError: the ``onnx`` package is missing.
    """
    onnx = require("onnx")
    helper = onnx.helper
    if batch is not None and (int(batch) != batch or batch < 1):
        raise ValueError(f"to_onnx: batch must be a positive int or None (dynamic), got {batch!r}")
    example = tuple(input_shape) if input_shape is not None else example_shape(model)
    g = GraphBuilder(onnx, model.dtype)
    x = g.reserve(INPUT)
    y, out_shape = convert(g, model.net, x, (None, *example), "")
    g.nodes.append(helper.make_node("Identity", [y], [OUTPUT], name=f"{OUTPUT}/Identity"))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    dim0 = BATCH if batch is None else int(batch)
    graph = helper.make_graph(
        g.nodes, model.arch,
        [helper.make_tensor_value_info(INPUT, elem, [dim0, *example])],
        [helper.make_tensor_value_info(OUTPUT, elem, [dim0, *out_shape[1:]])],
        initializer=g.initializers)
    props = metadata(model)
    proto = helper.make_model(graph, producer_name=PRODUCER, producer_version=props["xpnet.version"],
                              opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              doc_string=f"{type(model).__name__} exported by xpnet: scores before softmax")
    helper.set_model_props(proto, props)
    return proto


def export(model, path, batch=None, input_shape=None):
    """Write ``model`` to ``path`` as ONNX (see :func:`to_proto`), atomically; returns the ModelProto.

    An existing file at ``path`` is replaced only if it is an ONNX file that xpnet wrote: nothing else
    a user saved is overwritten.
    """
    proto = to_proto(model, batch, input_shape)
    _refuse_foreign(os.fspath(path))
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return proto


def _refuse_foreign(path):
    if not os.path.exists(path):
        return
    onnx = require("onnx")
    try:
        producer = onnx.load(path, load_external_data=False).producer_name
    except Exception:  # not ONNX at all (onnx raises several unrelated types): keep it
        producer = None
    if producer != PRODUCER:
        raise ExportError(f"{path} exists and is not an ONNX file written by xpnet; not overwriting it "
                          f"(remove it or choose another path)")

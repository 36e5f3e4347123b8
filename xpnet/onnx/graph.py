"""GraphBuilder: the nodes and initializers of one ONNX graph, collected while walking a network."""

import numpy as np

from xpnet import backends


class GraphBuilder:
    """Collects ONNX nodes and constant tensors under unique names, in the order they are added.

    Args:
        onnx: the imported ``onnx`` module (optional, so it is passed in rather than imported here).
        dtype: NumPy dtype of the network's activations; float constants are stored in it.

    Names: a layer's output tensor is called by the layer's dotted path (``"block1.body.conv1"``), its
    parameters keep their xpnet names (``"block1.body.conv1.W"``), so a graph reads like ``model.params``.
    """

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.initializers, self._used = [], [], set()

    def unique(self, name):
        """``name``, or ``name_2``, ``name_3``... if it is already taken."""
        out, k = name, 1
        while out in self._used:
            k += 1
            out = f"{name}_{k}"
        self._used.add(out)
        return out

    def reserve(self, name):
        """Mark ``name`` (a graph input) as taken; returns it."""
        self._used.add(name)
        return name

    def const(self, name, array, dtype=None):
        """Add ``array`` (any device) as an initializer in ``dtype`` (default: the graph's); returns its name."""
        host = np.asarray(backends.of(array).asnumpy(array) if hasattr(array, "dtype") else array)
        host = np.ascontiguousarray(host.astype(dtype or self.dtype, copy=False))
        name = self.unique(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(host, name))
        return name

    def ints(self, name, values):
        """An int64 1-D initializer (shapes, axes, pads); returns its name."""
        return self.const(name, np.asarray(values, dtype=np.int64), np.int64)

    def node(self, op, inputs, output, **attrs):
        """Append one ``op`` node reading ``inputs`` and writing a new tensor named after ``output``.

        Returns the output tensor's (unique) name; the node is named ``<output>/<op>``.
        """
        out = self.unique(output)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=f"{out}/{op}", **attrs))
        return out

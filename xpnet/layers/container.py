"""Sequential: layers applied in order, gradients in reverse."""

from collections import OrderedDict

from xpnet.layers.base import Layer


class Sequential(Layer):
    """A chain of named layers; parameters are exposed as ``"<layer>.<param>"``.

    Args:
        *layers: Layer objects (named ``<type><k>`` automatically) or ``(name, layer)`` pairs.
    """

    def __init__(self, *layers):
        super().__init__()
        self.layers = OrderedDict()
        counts = {}
        for item in layers:
            name, layer = item if isinstance(item, tuple) else (None, item)
            if name is None:
                base = type(layer).__name__.lower()
                counts[base] = counts.get(base, 0) + 1
                name = f"{base}{counts[base]}"
            if name in self.layers or "." in name:
                raise ValueError(f"Sequential: layer names must be unique and contain no '.', got {name!r}")
            layer.name = name
            self.layers[name] = layer

    def __getitem__(self, name):
        return self.layers[name]

    def __iter__(self):
        return iter(self.layers.values())

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        inner = "\n".join(f"  ({k}): {v!r}" for k, v in self.layers.items())
        return f"Sequential(\n{inner}\n)"

    def forward(self, x, train=False):
        for layer in self.layers.values():
            x = layer.forward(x, train)
        return x

    def backward(self, dout):
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        return dout

    def _collect(self, attr):
        out = OrderedDict()
        for lname, layer in self.layers.items():
            for k, v in getattr(layer, attr).items():
                out[f"{lname}.{k}"] = v
        return out

    @property
    def all_params(self):
        return self._collect("params")

    @property
    def all_grads(self):
        return self._collect("grads")

    @property
    def all_buffers(self):
        return self._collect("buffers")

    def set_array(self, full_name, value, kind="params"):
        """Replace one parameter or buffer by its ``"<layer>.<name>"``."""
        lname, k = full_name.split(".", 1)
        getattr(self.layers[lname], kind)[k] = value

    def to(self, backend):
        for layer in self.layers.values():
            layer.to(backend)
        return self

    def astype(self, dtype):
        for layer in self.layers.values():
            layer.astype(dtype)
        return self

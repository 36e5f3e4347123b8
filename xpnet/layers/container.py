"""Containers: layers made of named child layers (Sequential here; Residual and Concat in blocks.py)."""

from collections import OrderedDict

from xpnet.layers import fusion
from xpnet.layers.base import Layer


class Container(Layer):
    """A layer that holds named child layers, any of which may itself be a Container.

    Parameters, gradients and buffers of every descendant are exposed under dotted names
    (``"block1.body.conv1.W"``) through :attr:`params`, :attr:`grads` and :attr:`buffers` (also
    available as ``all_params``, ``all_grads``, ``all_buffers``). A container has no arrays of its own.

    Subclasses add children with :meth:`add` and implement ``forward`` and ``backward``.
    """

    def __init__(self):
        # Layer.__init__ is not called: params, grads and buffers are views over the children.
        self.name = type(self).__name__.lower()
        self.layers = OrderedDict()
        self._steps = None  # Sequential's run plan, rebuilt after add()

    def add(self, name, layer):
        """Adopt ``layer`` under ``name`` (unique, without '.'); returns the layer."""
        if not isinstance(name, str) or not name or name in self.layers or "." in name:
            raise ValueError(f"{type(self).__name__}: layer names must be unique and contain no '.', got {name!r}")
        if not isinstance(layer, Layer):
            raise TypeError(f"{type(self).__name__}: expected a Layer for {name!r}, got {type(layer).__name__}")
        self.layers[name] = layer
        self._steps = None
        self._qualify()
        return layer

    def _qualify(self):
        """Give every descendant its dotted path below this container as ``name`` (for error messages)."""
        outer = self.name if getattr(self, "_qualified", False) else None
        for local, child in self.layers.items():
            child.name = f"{outer}.{local}" if outer else local
            if isinstance(child, Container):
                child._qualified = True
                child._qualify()

    def __getitem__(self, name):
        return self.layers[name]

    def __iter__(self):
        return iter(self.layers.values())

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        inner = "\n".join(f"({k}): {v!r}" for k, v in self.layers.items())
        inner = "\n".join("  " + line for line in inner.splitlines())
        return f"{type(self).__name__}(\n{inner}\n)"

    def walk(self, prefix=""):
        """Yield ``(dotted_name, leaf_layer)`` for every non-container descendant, in order."""
        for local, child in self.layers.items():
            full = f"{prefix}{local}"
            if isinstance(child, Container):
                yield from child.walk(full + ".")
            else:
                yield full, child

    def _collect(self, attr):
        out = OrderedDict()
        for full, leaf in self.walk():
            for k, v in getattr(leaf, attr).items():
                out[f"{full}.{k}"] = v
        return out

    @property
    def params(self):
        return self._collect("params")

    @property
    def grads(self):
        return self._collect("grads")

    @property
    def buffers(self):
        return self._collect("buffers")

    all_params, all_grads, all_buffers = params, grads, buffers

    def set_array(self, full_name, value, kind="params"):
        """Replace one parameter, gradient or buffer by its dotted name (``"block1.body.conv1.W"``)."""
        lname, rest = full_name.split(".", 1)
        child = self.layers[lname]
        if isinstance(child, Container):
            child.set_array(rest, value, kind)
        else:
            getattr(child, kind)[rest] = value

    def to(self, backend):
        for layer in self.layers.values():
            layer.to(backend)
        return self

    def astype(self, dtype):
        for layer in self.layers.values():
            layer.astype(dtype)
        return self


class Sequential(Container):
    """A chain of named layers applied in order; gradients flow back in reverse.

    Args:
        *layers: Layer objects (named ``<type><k>`` automatically) or ``(name, layer)`` pairs.

    Shapes:
        x -> whatever the last layer returns.
    """

    def __init__(self, *layers):
        super().__init__()
        counts = {}
        for item in layers:
            name, layer = item if isinstance(item, tuple) else (None, item)
            if name is None:
                base = type(layer).__name__.lower()
                counts[base] = counts.get(base, 0) + 1
                name = f"{base}{counts[base]}"
            self.add(name, layer)

    def steps(self):
        """The layers as they run: a Conv2D or Affine with the ReLU/Dropout after it is one step (see
        :mod:`xpnet.layers.fusion`; the same results as the layers one by one)."""
        if self._steps is None:
            self._steps = fusion.chains(list(self.layers.values()))
        return self._steps

    def forward(self, x, train=False):
        for step in self.steps():
            x = step.forward(x, train)
        return x

    def backward(self, dout):
        for step in reversed(self.steps()):
            dout = step.backward(dout)
        return dout

    def backward_params(self, dout):
        """:meth:`backward` without the input gradient: the first step computes its parameters' only."""
        steps = self.steps()
        for step in reversed(steps[1:]):
            dout = step.backward(dout)
        if steps:
            steps[0].backward_params(dout)

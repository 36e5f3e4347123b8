"""Model: a Sequential network plus a loss layer, with the book's predict/loss/accuracy API."""

from collections import OrderedDict

import numpy as np

from xpnet import backends, precision, serialization
from xpnet.errors import DTypeError, FileFormatError, ShapeError
from xpnet.layers import fusion
from xpnet.models.flat import FlatStore
from xpnet.models.selection import batched_accuracy, select_names


class Model:
    """A trainable network.

    Subclasses build ``self.net`` (a Sequential) and ``self.loss_layer`` and record their constructor
    arguments in ``self.config`` so :func:`xpnet.load` can rebuild them.

    Args:
        net: the network (a Sequential). loss_layer: the loss on its outputs. config: the constructor
            arguments. input_shape: the shape of one example, ``(features,)`` for a flat input (any
            ``(N, ...)`` batch with that many values per example passes); None: not checked.

    L2 regularisation (weight decay) is the optimizer's: ``Optimizer(weight_decay=...)``.

    Parameters can be frozen by name (:meth:`freeze`): the Trainer passes only
    :attr:`trainable_params` to the optimizer, so frozen ones keep their values. Training
    checkpoints record the frozen names and :func:`~xpnet.training.restore` brings them back; a saved
    model file (:meth:`save`) holds weights only, no frozen state.
    """

    arch = "model"

    def __init__(self, net, loss_layer, config, input_shape=None):
        self.net, self.loss_layer = net, loss_layer
        self.config = dict(config)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._frozen = set()
        self._flat = FlatStore()  # parameters as views into one buffer per dtype (see trainable_params)
        self._flat.bind(net)
        # the loss's input gradient goes only to the network's last step: reusable when that step only reads it
        if loss_layer is not None:
            steps = net.steps() if hasattr(net, "steps") else [net]
            loss_layer.reuse_input_grad = bool(steps) and fusion.reads_only(steps[-1])

    def __repr__(self):
        head = f"{type(self).__name__}({self.num_params():,} parameters, {self.dtype}, {self.backend.name})"
        return f"{head}\n{self.net!r}"

    # -- arrays ----------------------------------------------------------------------------------
    @property
    def params(self):
        """OrderedDict ``"<layer>.<name>" -> array`` of every learnable parameter (dotted paths in blocks)."""
        return self.net.all_params

    @property
    def grads(self):
        """Gradients of the last :meth:`backward`, keyed like :attr:`params` (views into one buffer per
        dtype when the parameters are, see :attr:`trainable_params`)."""
        return self._flat.gathered(self.net.all_grads)

    @property
    def buffers(self):
        return self.net.all_buffers

    def num_params(self):
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    @property
    def backend(self):
        first = next(iter(self.params.values()), None)
        return backends.of(first) if first is not None else backends.current()

    @property
    def dtype(self):
        first = next(iter(self.params.values()), None)
        return first.dtype if first is not None else np.dtype(np.float32)

    def to(self, backend):
        """Move every parameter and buffer to ``backend``; returns self."""
        self.net.to(backend)
        self._flat.bind(self.net)
        return self

    def astype(self, dtype):
        """Cast every parameter and buffer to a floating dtype; returns self.

        ``float16`` stores and computes in half precision on both backends (layers that need range or
        long sums compute those parts in float32: see :mod:`xpnet.precision`). ``bfloat16`` raises
        DTypeError naming the backend and why it is unsupported (see :mod:`xpnet.precision`).
        """
        dtype = precision.resolve(dtype, self.backend.name, f"{type(self).__name__}.astype")
        self.net.astype(dtype)
        self._flat.bind(self.net)
        return self

    # -- computation -----------------------------------------------------------------------------
    def _prepare(self, x):
        """Move host input to the model's device; cast floating input to the model's dtype."""
        be = self.backend
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
        if x.dtype.kind != "f":
            raise DTypeError(f"{type(self).__name__}: expected floating-point images (normalised), got "
                             f"dtype {x.dtype}; use load_mnist(normalize=True) or x.astype('float32') / 255")
        if backends.of(x) is not be:
            x = be.asarray(x)
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def _check_shape(self, x):
        """Raise ShapeError naming the model unless x is a batch of the configured input shape."""
        want = self.input_shape
        if want is None:
            return
        got = tuple(x.shape[1:])
        if len(want) == 1:  # a flat input: any (N, ...) with that many values per example
            ok = x.ndim >= 2 and int(np.prod(got)) == want[0]
        else:
            ok = got == want
        if not ok:
            raise ShapeError(f"{type(self).__name__}: expected input of shape (N, {', '.join(map(str, want))}), "
                             f"got shape {tuple(x.shape)}")

    def predict(self, x, train=False):
        """Scores before softmax. x: (N, ...) on any device -> (N, classes) on the model's device.

        Shapes and dtypes are checked; values are not: NaN or Inf inputs give NaN or Inf scores (a check
        would cost a device sync per call). The Trainer stops on a non-finite loss instead.
        """
        x = self._prepare(x)
        self._check_shape(x)
        if x.ndim == 0 or x.shape[0] == 0:
            raise ShapeError(f"{type(self).__name__}: expected a batch of at least one example, got shape "
                             f"{tuple(x.shape)}")
        return self.net.forward(x, train)

    @property
    def classifies(self):
        """True when the outputs are class scores (the loss compares them with class labels)."""
        return self.loss_layer.classifies

    def forward_loss(self, x, t, train=True, reuse=False):
        """``(loss, y)``: the mean loss over the batch (a 0-d device array) and the outputs it was computed from.

        Args:
            reuse: the caller is done with the loss and outputs of its previous call (a training loop such as
                the Trainer's): in training mode they may then be written into the same buffers, so a step
                allocates nothing on a GPU.

        Shapes:
            x (N, ...) -> y (N, outputs) on the model's device; t as the loss layer takes it.
        """
        heads = self._output_heads()
        for layer in heads:
            layer.reuse_output = bool(train and reuse)
        try:
            y = self.predict(x, train)
            loss = self.loss_layer.forward(y, t, train)
        finally:
            for layer in heads:
                layer.reuse_output = False
        self._has_loss = True
        return loss, y

    def _output_heads(self):
        """The layers that make what :meth:`forward_loss` returns (the net's last step, the loss layer)."""
        steps = self.net.steps() if hasattr(self.net, "steps") else [self.net]
        last = fusion.head(steps[-1]) if steps else None
        heads = [self.loss_layer] if self.loss_layer is not None else []
        if last is not None and sum(fusion.head(s) is last for s in steps) == 1:
            heads.append(last)
        return heads

    def loss(self, x, t, train=True):
        """Mean loss over the batch as a 0-d device array (``float(...)`` to read it)."""
        return self.forward_loss(x, t, train)[0]

    def backward(self, loss_scale=1.0):
        """Back-propagate the last :meth:`loss`; fills :attr:`grads`.

        Args:
            loss_scale: multiplies the loss before back-propagation (mixed-precision training's loss
                scaling), so every gradient comes out scaled by it.
        """
        if not getattr(self, "_has_loss", False):
            raise RuntimeError(f"{type(self).__name__}.backward: no loss to back-propagate; call loss(x, t) first")
        self.net.backward_params(self.loss_layer.backward(float(loss_scale)))  # the input's gradient: unused
        if self._flat.current(self.params):
            self._flat.gather(self.net.all_grads)
        return self.grads

    def gradient(self, x, t):
        """The book's API: loss then backward; returns the gradients."""
        self.loss(x, t, train=True)
        return self.backward()

    def accuracy(self, x, t, batch_size=100):
        """Fraction of ``x`` classified as ``t`` (indices or one-hot), evaluated in batches."""
        return batched_accuracy(self.predict, self.backend, x, t, batch_size)

    # -- freezing --------------------------------------------------------------------------------
    @property
    def frozen(self):
        """The set of frozen parameter names (a copy)."""
        return set(self._frozen)

    @property
    def trainable_params(self):
        """OrderedDict of the parameters that are not frozen, keyed like :attr:`params`.

        With none frozen it is a :class:`~xpnet.models.flat.FlatArrays`: the parameters are views into
        one buffer per dtype, which an optimizer updates with one kernel per buffer.
        """
        params = self.params
        if not self._frozen:
            return self._flat.params if self._flat.current(params) else self._flat.bind(self.net)
        return OrderedDict((k, v) for k, v in params.items() if k not in self._frozen)

    def freeze(self, *patterns):
        """Freeze parameters so training leaves them unchanged; returns self.

        Args:
            *patterns: fnmatch-style patterns matched against the full name (``"conv1.W"``) and against
                the layer name (``"conv*"``, ``"fc2"``). None: every parameter.

        Raises:
            ValueError: a pattern matches no parameter (the message lists the layers).

        Freezing stops optimizer updates only: a frozen BatchNorm still updates its running statistics
        in training mode, and gradients are still computed.
        """
        self._frozen |= self._select(patterns, "freeze")
        return self

    def unfreeze(self, *patterns):
        """Undo :meth:`freeze` for the parameters matching ``patterns`` (none: all); returns self."""
        self._frozen -= self._select(patterns, "unfreeze")
        return self

    def _select(self, patterns, caller):
        if not patterns:
            return set(self.params)
        return select_names(self.params, patterns, f"{type(self).__name__}.{caller}", "parameter",
                            "layers with parameters")

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self):
        """OrderedDict of parameters and buffers as NumPy arrays."""
        out = OrderedDict()
        for k, v in {**self.params, **self.buffers}.items():
            out[k] = backends.of(v).asnumpy(v).copy()  # a snapshot: NumPy's asnumpy returns the live array
        return out

    def load_state_dict(self, state):
        """Load arrays by name; every name must match, shapes must agree; dtype and device stay the model's."""
        own = {**{k: "params" for k in self.params}, **{k: "buffers" for k in self.buffers}}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise FileFormatError(f"{type(self).__name__}: state does not match the architecture; "
                                  f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        current = {**self.params, **self.buffers}
        for k, kind in own.items():
            v = np.array(state[k])  # a copy, so training never writes into the caller's arrays
            if v.shape != current[k].shape:
                raise FileFormatError(f"{type(self).__name__}: '{k}' has shape {v.shape} in the state but "
                                      f"{tuple(current[k].shape)} in the model")
            dtype = current[k].dtype if kind == "buffers" else self.dtype  # BatchNorm keeps float32 statistics
            self.net.set_array(k, self.backend.asarray(v, dtype=dtype), kind)
        self._flat.bind(self.net)
        return self

    def save(self, path):
        """Save to ``path`` (``.npz`` + JSON metadata), atomically; reload with :func:`xpnet.load`."""
        serialization.save(self, path)

    def to_onnx(self, path, batch=None):
        """Export to ONNX at ``path``, atomically (needs ``pip install "xpnet[onnx]"``); returns the ModelProto.

        Args:
            path: the ``.onnx`` file to write.
            batch: a fixed batch size, or None for a dynamic batch axis.

        Shapes:
            graph input ``"input"`` (batch, *input_dim) -> output ``"logits"`` (batch, classes), as
            :meth:`predict` in inference mode. See :mod:`xpnet.onnx`.
        """
        from xpnet.onnx import export

        return export(self, path, batch=batch)

    # -- randomness (dropout) ---------------------------------------------------------------------
    def _random_layers(self):
        """``(dotted_name, layer)`` for every layer with its own generator, nested blocks included."""
        return [(name, l) for name, l in self.net.walk() if hasattr(l, "get_rng_state")]

    def get_rng_state(self):
        """Generator states of every Dropout layer, keyed by dotted layer name (``"block1.body.dropout"``)."""
        return {name: l.get_rng_state() for name, l in self._random_layers()}

    def set_rng_state(self, state):
        for name, l in self._random_layers():
            l.set_rng_state((state or {}).get(name))

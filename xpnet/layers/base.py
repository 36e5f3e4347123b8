"""The Layer base class and the input checks every layer shares."""

from xpnet import backends
from xpnet.errors import DeviceMismatchError, DTypeError, ShapeError


class Layer:
    """A differentiable step: ``forward(x, train)`` caches what ``backward(dout)`` needs.

    Attributes:
        params: learnable arrays by name (``"W"``, ``"b"``...).
        grads: gradients of the last backward pass, keyed like ``params``.
        buffers: non-learned state that is saved with the model (BatchNorm's running statistics).
        grad_out: where the owner wants gradients written, keyed like ``params`` (a model's flat gradient
            buffer, see :class:`xpnet.models.flat.FlatStore`); layers that support it write there.
        name: set by the container that holds the layer; used in error messages.
        classifies: for a loss layer, True when its inputs are class scores compared with class labels
            (the Trainer then reports accuracy); False otherwise.
    """

    classifies = False
    #: Set by the Sequential that runs this layer: its training-mode output (``reuse_output``) or input
    #: gradient (``reuse_input_grad``) only ever goes to a neighbour that reads it and keeps no view of
    #: it past its next call, so a backend may hand back the same buffer every step (no allocation).
    reuse_output = False
    reuse_input_grad = False

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.grad_out = {}
        self.name = type(self).__name__.lower()

    def __call__(self, x, train=False):
        return self.forward(x, train)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""

    def forward(self, x, train=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def backward_params(self, dout):
        """:meth:`backward` where nothing needs the input gradient (a model's first layer): the parameters'
        gradients only; returns None. Layers that can skip computing dx override it."""
        self.backward(dout)

    def grad_dests(self, *names):
        """The arrays in :attr:`grad_out` for these gradient names (None where there is none)."""
        return tuple(self.grad_out.get(n) for n in names)

    # -- device and dtype -----------------------------------------------------------------------
    def _arrays(self):
        return {**self.params, **self.buffers}

    def to(self, backend):
        """Move parameters and buffers to ``backend`` (a name or Backend); returns self."""
        be = backends.get(backend)
        for store in (self.params, self.buffers):
            for k, v in store.items():
                store[k] = be.asarray(v)
        self.grads, self.grad_out = {}, {}
        return self

    def astype(self, dtype):
        """Cast parameters and buffers to a floating ``dtype``; returns self."""
        for store in (self.params, self.buffers):
            for k, v in store.items():
                store[k] = v.astype(dtype)
        self.grads, self.grad_out = {}, {}
        return self

    # -- checks shared by layers -------------------------------------------------------------
    def _label(self):
        return f"{type(self).__name__} '{self.name}'"

    def check_input(self, x, ndim=None, shape_hint=""):
        """Raise a clear error unless ``x`` is a floating array of ``ndim`` dims on the layer's device."""
        dtype = getattr(x, "dtype", None)
        if dtype is None or not hasattr(x, "shape"):
            raise DTypeError(f"{self._label()}: expected an array, got {type(x).__name__}")
        dims = ndim if isinstance(ndim, tuple) else (ndim,)
        if ndim is not None and x.ndim not in dims:
            want = " or ".join(f"{d}-D" for d in dims) + (f" {shape_hint}" if shape_hint else "")
            raise ShapeError(f"{self._label()}: expected a {want} input, got shape {tuple(x.shape)}")
        if dtype.kind != "f":
            raise DTypeError(f"{self._label()}: expected a floating-point input, got dtype {dtype}")
        ref = next(iter(self._arrays().values()), None)
        if ref is None:
            return
        if backends.of(x) is not backends.of(ref):
            raise DeviceMismatchError(
                f"{self._label()}: input is on {backends.of(x).name} but its parameters are on "
                f"{backends.of(ref).name}; move one with model.to(...) or backend.asarray(...)"
            )
        if dtype != ref.dtype:
            raise DTypeError(
                f"{self._label()}: expected input dtype {ref.dtype} (the parameters' dtype), got {dtype}; "
                f"cast with x.astype('{ref.dtype}') or model.astype('{dtype}')"
            )

    def check_grad(self, dout, expected_shape):
        """Raise unless backward's incoming gradient matches the forward output's shape."""
        if tuple(dout.shape) != tuple(expected_shape):
            raise ShapeError(
                f"{self._label()}: backward expected a gradient of shape {tuple(expected_shape)}, "
                f"got {tuple(dout.shape)}"
            )


def xp_of(x):
    """The array module (numpy or cupy) that ``x`` belongs to."""
    return backends.of(x).xp

"""Layer chains a Sequential runs as one step: a GEMM layer and the elementwise layers right after it.

``Conv2D`` then ``ReLU`` (then ``MaxPool2D``), and ``Affine`` then ``ReLU`` and/or ``Dropout``, run as the
GEMM layer's ``forward_fused``: the backend applies bias, ReLU, max pool and dropout in the GEMM's
epilogue and, backward, the masks (and the pool's gather) and the bias gradient in one pass (see
``Backend.conv2d_forward`` and ``Backend.affine_forward``: the same arithmetic as the layers one by one).
The layers stay the Sequential's own, with their parameters and names; only the order of work changes.
Exact layer types are matched, so a subclass with its own behaviour runs on its own.
"""

from xpnet import backends
from xpnet.layers.activation import ReLU
from xpnet.layers.conv import Conv2D
from xpnet.layers.dropout import Dropout
from xpnet.layers.linear import Affine
from xpnet.layers.pool import MaxPool2D


class ConvReLU:
    """Conv2D + ReLU in one step (the ReLU's mask is read from the output, as ReLU's inference mode does)."""

    def __init__(self, conv, relu):
        self.conv, self.relu = conv, relu

    def forward(self, x, train=False):
        y = self.conv.forward_fused(x, train, relu=True)
        self.relu.out, self.relu.mask = y, None  # ReLU.backward, if called on its own, masks by y > 0
        return y

    def backward(self, dout):
        return self.conv.backward(dout)

    def backward_params(self, dout):
        self.conv.backward_params(dout)


class ConvReLUPool(ConvReLU):
    """Conv2D + ReLU + MaxPool2D in one step (the pool's argmax and the ReLU's mask are the backend's cache)."""

    def __init__(self, conv, relu, pool):
        super().__init__(conv, relu)
        self.pool = pool

    def forward(self, x, train=False):
        conv_shape = self.conv.output_shape(x.shape) if getattr(x, "ndim", 0) == 4 else None
        if conv_shape is None or min(self.pool.output_shape(conv_shape)[2:]) < 1:
            return self.pool.forward(super().forward(x, train), train)  # the layers raise their own errors
        y = self.conv.forward_fused(x, train, relu=True, pool=self.pool)
        self.relu.out = self.relu.mask = None  # the ReLU's and the pool's state are in the conv's cache
        self.pool.cache = None
        return y


class AffineChain:
    """Affine, then ReLU (or None), then Dropout (or None), in one step."""

    def __init__(self, affine, relu=None, dropout=None):
        self.affine, self.relu, self.dropout = affine, relu, dropout

    def forward(self, x, train=False):
        drop = self.dropout
        ratio = drop.ratio if drop is not None and train else 0.0
        rng = drop.rng_for(backends.of(x)) if ratio else None
        y = self.affine.forward_fused(x, train, relu=self.relu is not None, dropout=ratio, rng=rng)
        for layer in (self.relu, drop):  # their state is in the affine layer's cache now
            if layer is not None:
                layer.out = layer.mask = None
        return y

    def backward(self, dout):
        return self.affine.backward(dout)

    def backward_params(self, dout):
        self.affine.backward_params(dout)


def head(step):
    """The layer whose backend call makes a step's output and input gradient."""
    return getattr(step, "conv", None) or getattr(step, "affine", None) or step


def reads_only(step):
    """True when ``step`` neither returns its input (or a view of it) forward nor its dout backward."""
    return isinstance(step, (ConvReLU, AffineChain, Conv2D, Affine, MaxPool2D))  # ConvReLUPool is a ConvReLU


def mark_reuse(steps):
    """Tell each step's head layer whether its output and input gradient stay inside ``steps``: the output
    goes to a next step that only reads it, the input gradient to a previous one that only reads it
    (a layer that appears twice never reuses: its second call would overwrite the first's result)."""
    heads = [head(s) for s in steps]
    once = {id(h) for h in heads if sum(h is g for g in heads) == 1}
    for k, h in enumerate(heads):
        if not hasattr(h, "params"):  # not a Layer: nothing to mark
            continue
        mine = id(h) in once
        h.reuse_output = mine and k + 1 < len(steps) and reads_only(steps[k + 1])
        h.reuse_input_grad = mine and k > 0 and reads_only(steps[k - 1])


def chains(layers):
    """``layers`` (a list) as steps: each a layer, a :class:`ConvReLU` or an :class:`AffineChain`."""
    steps, i = [], 0
    while i < len(layers):
        layer, rest = layers[i], layers[i + 1:]
        if type(layer) is Conv2D and len(rest) > 1 and type(rest[0]) is ReLU and type(rest[1]) is MaxPool2D:
            steps.append(ConvReLUPool(layer, rest[0], rest[1]))
            i += 3
            continue
        if type(layer) is Conv2D and rest and type(rest[0]) is ReLU:
            steps.append(ConvReLU(layer, rest[0]))
            i += 2
            continue
        if type(layer) is Affine:
            relu = rest[0] if rest and type(rest[0]) is ReLU else None
            after = rest[1 if relu else 0:]
            drop = after[0] if after and type(after[0]) is Dropout else None
            if relu or drop:
                steps.append(AffineChain(layer, relu, drop))
                i += 1 + (relu is not None) + (drop is not None)
                continue
        steps.append(layer)
        i += 1
    mark_reuse(steps)
    return steps

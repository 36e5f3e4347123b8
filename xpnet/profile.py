"""Per-layer timing of a model's forward and backward passes, and the layer-type buckets of reports.

What is measured: each layer's own work by the device's clock. On the CPU that is wall-clock time
around the layer's call (the work is done when it returns). On a GPU it is the time between CUDA events
recorded before and after the layer's kernels, with the whole pass queued behind a spin kernel
(:meth:`~xpnet.backends.Backend.timeline`): the GPU then runs the pass's kernels back to back, so a
layer's interval is its kernels' device time, not the host's time to launch them (which on a
launch-bound GPU would make the figure a count of launches). Each row says whether that held for every
timed sample (``device_only``; False where the layer synchronised with the host, say). Rows report the
median, minimum and maximum over ``repeats`` passes after ``warmup`` untimed ones.

Example:
    >>> rows = profile(DeepConvNet(), x, t, repeats=10)
    >>> for r in summarize(rows): print(r["type"], r["forward_ms"], r["backward_ms"])
"""

import statistics

import numpy as np

from xpnet import backends

TYPES = ("conv", "fc", "pool", "norm", "relu", "dropout", "other")

_TYPE_OF_CLASS = {
    "Conv2D": "conv",
    "Affine": "fc",
    "MaxPool2D": "pool",
    "AvgPool2D": "pool",
    "LocalResponseNormalization": "norm",
    "BatchNorm": "norm",
    "ReLU": "relu",
    "Dropout": "dropout",
}


def layer_type(layer):
    """The report bucket of a layer: one of :data:`TYPES` (loss, Flatten, Sigmoid... are ``"other"``).

    Subclasses count as their nearest known base class.
    """
    for cls in type(layer).__mro__:
        if cls.__name__ in _TYPE_OF_CLASS:
            return _TYPE_OF_CLASS[cls.__name__]
    return "other"


def time_stats(values):
    """``(median, min, max)`` of a non-empty sequence of milliseconds, as floats."""
    values = [float(v) for v in values]
    return statistics.median(values), min(values), max(values)


def _layers_of(model):
    """(name, layer) pairs of a Model's network, or of a Sequential."""
    net = getattr(model, "net", model)
    if not hasattr(net, "layers"):
        raise TypeError(f"profile: expected a Model or a Sequential, got {type(model).__name__}")
    return list(net.layers.items())


def _device_input(layers, x):
    """``x`` on the parameters' device and in their dtype (unchanged when the net has no parameters)."""
    ref = next((p for _, layer in layers for p in layer.params.values()), None)
    if ref is None:
        return x
    be = backends.of(ref)
    x = x if backends.of(x) is be else be.asarray(x)
    return x if x.dtype == ref.dtype else x.astype(ref.dtype)


def _one_pass(layers, loss_layer, x, t, train, backward, hold_ms):
    """Run forward (and backward) once on one timeline.

    Returns ``{name: [forward (ms, device_only), backward (ms, device_only) or None]}``, the output
    shapes and the host's milliseconds to queue the pass.
    """
    be = backends.of(x)
    tl = be.timeline(hold_ms)
    pieces, shapes = [], {}  # (name, 0 forward / 1 backward) of each interval, in order
    tl.mark()
    for name, layer in layers:
        x = layer.forward(x, train)
        tl.mark()
        pieces.append((name, 0))
        shapes[name] = tuple(x.shape)
    if loss_layer is not None:
        loss_layer.forward(x, t, train)
        tl.mark()
        pieces.append(("loss", 0))
        shapes["loss"] = ()
    if backward:
        if loss_layer is not None:
            dout = loss_layer.backward(1.0)
            tl.mark()
            pieces.append(("loss", 1))
        else:
            dout = be.xp.ones(x.shape, dtype=x.dtype)  # the gradient of sum(scores)
        for name, layer in reversed(layers):
            dout = layer.backward(dout)
            tl.mark()
            pieces.append((name, 1))
    times = {name: [None, None] for name in shapes}
    for (name, phase), interval in zip(pieces, tl.intervals(), strict=True):
        times[name][phase] = interval
    return times, shapes, tl.host_ms


def profile(model, x, t=None, backward=True, repeats=10, warmup=2, train=True):
    """Time every layer of ``model`` on one batch.

    Args:
        model: a :class:`~xpnet.models.Model` (its loss layer is timed too when ``t`` is given) or a
            :class:`~xpnet.layers.Sequential`.
        x: input batch (N, ...) on any device; moved to the parameters' device and dtype.
        t: labels (N,) or (N, K) for the loss layer; without them backward starts from the gradient
            of ``sum(scores)`` and no loss row is reported.
        backward: also time the backward pass.
        repeats: timed passes (>= 1). warmup: untimed passes first (page faults, kernel compilation,
            the backend's workspace buffers).
        train: forward in training mode (dropout draws masks); needed for a meaningful backward.

    Returns:
        list of dicts, one per layer in forward order (then ``"loss"``), with keys ``name``, ``type``
        (see :func:`layer_type`), ``layer`` (class name), ``output_shape``, ``forward_ms``,
        ``forward_min_ms``, ``forward_max_ms``, the same three for backward (None when ``backward`` is
        False) and ``device_only`` (every timed interval of the row measured device work alone).
    """
    if int(repeats) < 1 or int(warmup) < 0:
        raise ValueError(f"profile: need repeats >= 1 and warmup >= 0, got {repeats!r}, {warmup!r}")
    layers = _layers_of(model)
    loss_layer = getattr(model, "loss_layer", None) if t is not None else None
    x = _device_input(layers, x if hasattr(x, "dtype") else np.asarray(x))
    runs, host_ms = [], 2.0
    for i in range(int(warmup) + int(repeats)):
        # a GPU's spin must outlast the host's queueing of the pass: twice the last pass's and 1 ms more (at
        # most 250 ms: the first pass's queueing includes compiling the kernels)
        hold_ms = min(2 * host_ms + 1.0, 250.0)
        times, shapes, host_ms = _one_pass(layers, loss_layer, x, t, train, backward, hold_ms)
        if i >= warmup:
            runs.append(times)
    kinds = dict(layers)
    if loss_layer is not None:
        kinds["loss"] = loss_layer
    return [_row(name, kinds[name], shapes[name], [r[name] for r in runs], backward) for name in runs[0]]


def _row(name, layer, shape, samples, backward):
    fwd = time_stats(s[0][0] for s in samples)
    bwd = time_stats(s[1][0] for s in samples) if backward else (None, None, None)
    device_only = all(s[0][1] and (not backward or s[1][1]) for s in samples)
    return {
        "name": name, "type": layer_type(layer), "layer": type(layer).__name__, "output_shape": list(shape),
        "forward_ms": fwd[0], "forward_min_ms": fwd[1], "forward_max_ms": fwd[2],
        "backward_ms": bwd[0], "backward_min_ms": bwd[1], "backward_max_ms": bwd[2], "device_only": device_only,
    }


def summarize(rows):
    """Per-type totals of :func:`profile` rows: one dict per type in :data:`TYPES` order.

    Returns:
        list of dicts with ``type``, ``layers`` (count), ``forward_ms``, ``forward_share`` (fraction of
        the forward total), ``backward_ms`` and ``backward_share`` (None when not measured). Types
        with no layer are left out.
    """
    out = []
    fwd_total = sum(r["forward_ms"] for r in rows) or 1.0
    has_bwd = all(r["backward_ms"] is not None for r in rows)
    bwd_total = (sum(r["backward_ms"] for r in rows) or 1.0) if has_bwd else None
    for kind in TYPES:
        mine = [r for r in rows if r["type"] == kind]
        if not mine:
            continue
        fwd = sum(r["forward_ms"] for r in mine)
        bwd = sum(r["backward_ms"] for r in mine) if has_bwd else None
        out.append({"type": kind, "layers": len(mine), "forward_ms": fwd, "forward_share": fwd / fwd_total,
                    "backward_ms": bwd, "backward_share": bwd / bwd_total if has_bwd else None})
    return out

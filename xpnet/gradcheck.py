"""Numerical gradients by central differences in float64, and a checker for layers and models."""

import numpy as np

from xpnet import backends


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of scalar ``f()`` with respect to array ``x`` (perturbed in place).

    Args:
        f: callable with no arguments returning a scalar (it reads ``x``).
        x: float64 array of any backend; restored after each probe.
    """
    be = backends.of(x)
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: writes reach x
    if flat.base is None and flat is not x and x.size:
        raise ValueError("numerical_gradient needs a contiguous array")
    for i in range(x.size):
        old = float(flat[i])
        flat[i] = old + eps
        fp = float(f())
        flat[i] = old - eps
        fm = float(f())
        flat[i] = old
        grad.reshape(-1)[i] = (fp - fm) / (2 * eps)
    return be.asarray(grad)


def relative_error(a, b):
    """||a - b|| / (||a|| + ||b||) with L2 norms over all elements (0 when both are zero)."""
    a, b = np.asarray(backends.of(a).asnumpy(a), float), np.asarray(backends.of(b).asnumpy(b), float)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def check_layer(layer, x, train=True, seed=0, eps=1e-6):
    """Compare a layer's backward with central differences of sum(forward(x) * R), R fixed and random.

    The layer and ``x`` must be float64. Dropout layers are reseeded before every forward so each
    probe sees the same mask.

    Returns:
        dict: relative error per array: ``"x"`` and each parameter name.
    """
    be = backends.of(x)
    R = be.asarray(np.random.default_rng(seed).standard_normal(layer_output_shape(layer, x, train)))

    def f():
        reset_rng(layer)
        return (layer.forward(x, train) * R).sum()

    f()
    dx = layer.backward(R)
    analytic = {"x": dx, **{k: v for k, v in layer.grads.items()}}
    numeric = {"x": numerical_gradient(f, x, eps)}
    for k, p in layer.params.items():
        numeric[k] = numerical_gradient(f, p, eps)
    return {k: relative_error(analytic[k], numeric[k]) for k in numeric}


def check_model(model, x, t, eps=1e-6, train=True):
    """Relative error of every parameter gradient of ``model.loss(x, t, train)`` (float64 model and input)."""

    def f():
        reset_rng(model.net)
        return model.loss(x, t, train=train)

    f()
    model.backward()
    analytic = dict(model.grads)
    return {k: relative_error(analytic[k], numerical_gradient(f, p, eps)) for k, p in model.params.items()}


def sample_model(model, x, t, rng, per_param=2, eps=1e-6, train=True):
    """Probe ``per_param`` random entries of every parameter of a float64 model by central differences.

    For models too large for :func:`check_model`. Dropout is reseeded before every forward; ``train``
    is passed to ``model.loss`` (False: inference mode, BatchNorm's running statistics held fixed).

    Returns:
        dict name -> ``(analytic, numeric)``: two float64 NumPy arrays of the probed entries.
    """

    def loss():
        reset_rng(model.net)
        return float(model.loss(x, t, train=train))

    loss()
    be = model.backend
    analytic = {k: be.asnumpy(g).reshape(-1) for k, g in model.backward().items()}
    out = {}
    for name, p in model.params.items():
        flat = p.reshape(-1)  # a view: writes reach the parameter
        idx = rng.choice(flat.size, size=min(per_param, flat.size), replace=False)
        numeric = np.empty(len(idx))
        for j, i in enumerate(idx):
            old = float(flat[i])
            flat[i] = old + eps
            plus = loss()
            flat[i] = old - eps
            minus = loss()
            flat[i] = old
            numeric[j] = (plus - minus) / (2 * eps)
        out[name] = (np.asarray(analytic[name][idx], np.float64), numeric)
    return out


def layer_output_shape(layer, x, train):
    reset_rng(layer)
    return tuple(layer.forward(x, train).shape)


def reset_rng(layer):
    """Re-create dropout generators from their seeds, so repeated forwards draw the same masks."""
    leaves = [l for _, l in layer.walk()] if hasattr(layer, "walk") else [layer]
    for l in leaves:
        if hasattr(l, "set_rng_state"):
            l.set_rng_state(None)

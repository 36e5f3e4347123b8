"""LocalResponseNormalization: values against a naive loop, gradients against central differences."""

import numpy as np
import pytest
from tolerance import assert_close

from xpnet.gradcheck import check_layer
from xpnet.layers import LocalResponseNormalization


def naive_lrn(x, size, alpha, beta, k):
    """The paper's formula, one channel at a time, in float64."""
    N, C, H, W = x.shape
    out = np.empty_like(x, dtype=np.float64)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C - 1, c + (size - 1) // 2)
        s = k + alpha * (x[:, lo : hi + 1].astype(np.float64) ** 2).sum(axis=1)
        out[:, c] = x[:, c] / s**beta
    return out


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.75, 1.0), (4, 0.3, 1.2, 2.0),
                                                  (1, 1.0, 0.5, 1.0), (9, 0.2, 0.75, 2.0)])
def test_values_match_naive_loop(backend, rng, size, alpha, beta, k):
    x = rng.standard_normal((2, 7, 4, 3)) * 3
    layer = LocalResponseNormalization(size, alpha, beta, k)
    y = layer.forward(backend.asarray(x, dtype=np.float32))
    assert y.dtype == np.float32 and y.shape == x.shape
    # relative to |y|: a sum of `size` squares, then k + alpha/size * sum, a power and a division
    want = naive_lrn(x, size, alpha, beta, k)
    assert_close(backend.asnumpy(y), want, terms=size + 4, scale=np.abs(want))


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 2.0), (5, 0.5, 0.75, 2.0), (4, 0.3, 1.2, 1.5),
                                                  (9, 0.2, 0.75, 1.0)])
def test_gradient_check_float64(backend, rng, size, alpha, beta, k):
    x = backend.asarray(rng.standard_normal((2, 6, 3, 3)) * 2)
    errors = check_layer(LocalResponseNormalization(size, alpha, beta, k), x)
    assert errors["x"] < 1e-6, errors


def test_alexnet_constants_are_the_default():
    layer = LocalResponseNormalization()
    assert (layer.size, layer.alpha, layer.beta, layer.k) == (5, 1e-4, 0.75, 2.0)


@pytest.mark.parametrize("kwargs", [dict(size=0), dict(size=2.5), dict(k=0.0), dict(alpha=-1.0), dict(beta=-0.1)])
def test_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        LocalResponseNormalization(**kwargs)


def test_rejects_non_4d_input(backend):
    from xpnet.errors import ShapeError

    with pytest.raises(ShapeError):
        LocalResponseNormalization().forward(backend.xp.ones((2, 3), dtype=np.float32))


def test_matches_torch_when_alpha_is_scaled(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 8, 5, 5)).astype(np.float32) * 4
    ours = LocalResponseNormalization(5, 1e-2, 0.75, 2.0).forward(x)
    theirs = torch.nn.LocalResponseNorm(5, alpha=5 * 1e-2, beta=0.75, k=2.0)(torch.from_numpy(x)).numpy()
    assert_close(ours, theirs, terms=5 + 4, scale=np.abs(theirs))  # both float32: as test_values_match_naive_loop

"""Half precision on every backend: per-layer error bounds against float64, overflow, bfloat16 errors.

Bounds. A float16 value carries a relative rounding error of at most u = eps16 / 2 = 2^-11 ~ 4.9e-4.
For a length-K dot product whose inputs are rounded to float16 and which accumulates in float32 (both
backends, see :mod:`xpnet.precision`), each product x_k w_k carries at most 2u from its two roundings,
the float32 sum adds K * eps32 (negligible here) and the result is rounded once more (u):

    |y16 - y64| <= (3u + K * eps32) * sum_k |x_k| |w_k|  (+ u |b| for the bias)

We test with a factor 2 of slack: ``|y16 - y64| <= 2 * (3u + K eps32) * (|x| @ |w|)`` elementwise, the
same for the backward products (dx = dout W^T, dW = x^T dout: their own K and |.| @ |.| magnitudes).
In :mod:`tolerance`'s terms (bound = safety * terms * eps * scale, eps = 2u): safety 2, 1.5 terms of
eps16 and K of eps32.
Elementwise layers (ReLU, pools, Sigmoid, Tanh, Dropout) compute one rounded function of one rounded
input: |f16(x) - f64(x)| <= u |f(x)| + |f'(x)| u |x| + u, tested as ``4u * (|f(x)| + |x| |f'(x)|) +
tiny``; float32-internal layers (softmax, BatchNorm, LRN) round their input and output once, with a
condition number of order a few, tested at 16u relative to the output's scale.
"""

import numpy as np
import pytest
from tolerance import assert_close, bound

from xpnet import precision
from xpnet.errors import DTypeError
from xpnet.layers import (
    Affine,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    LocalResponseNormalization,
    MaxPool2D,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from xpnet.models import MLP

U16 = precision.epsilon("float16") / 2  # unit roundoff 2^-11
EPS32 = precision.epsilon("float32")


def _pair(backend, layer_of, x64):
    """Run the same layer (same float64-rounded-to-float16 weights) in float64 and float16."""
    lo, hi = layer_of(), layer_of()
    lo.astype("float16")
    hi.params = {k: v.astype("float16").astype("float64") for k, v in lo.params.items()}  # identical values
    hi.buffers = {k: v.astype("float64") for k, v in lo.buffers.items()}
    x16 = backend.asarray(x64, dtype="float16")
    return lo, hi, x16, backend.asarray(x16, dtype="float64")


def _host(backend, a):
    return backend.asnumpy(a).astype(np.float64)


def _sum_bound(K, value, magnitude):
    """A float32 sum of K products of values that are float16 in both runs, rounded to float16 once:
    2 (u |value| + K eps32 magnitude), elementwise (magnitude: the sum of the terms' |.|)."""
    return bound(np.float16, terms=1, scale=np.abs(value), safety=1) + bound(np.float32, terms=K, scale=magnitude,
                                                                             safety=2)


def _gemm_bound(K, magnitude):
    """2 * (3u + K eps32) * magnitude, elementwise (see the module docstring)."""
    return bound(np.float16, terms=1.5, scale=magnitude, safety=2) + bound(np.float32, terms=K, scale=magnitude,
                                                                           safety=2)


def test_affine_within_dot_product_bound(backend, rng):
    K = 256
    x = rng.standard_normal((8, K))
    lo, hi, x16, x64 = _pair(backend, lambda: Affine(K, 16, rng=np.random.default_rng(0), dtype="float64"), x)
    y16, y64 = _host(backend, lo.forward(x16)), _host(backend, hi.forward(x64))
    W = _host(backend, hi.params["W"])
    assert np.all(np.abs(y16 - y64) <= _gemm_bound(K, np.abs(_host(backend, x64)) @ np.abs(W)) + U16)
    dout = rng.standard_normal(y64.shape)
    dx16 = _host(backend, lo.backward(backend.asarray(dout, dtype="float16")))
    dx64 = _host(backend, hi.backward(backend.asarray(dout.astype(np.float16), dtype="float64")))
    assert np.all(np.abs(dx16 - dx64) <= _gemm_bound(16, np.abs(dout) @ np.abs(W.T)) + U16)
    N = x.shape[0]  # dW = x^T dout: a length-N sum
    gW = np.abs(_host(backend, x64)).T @ np.abs(dout)
    assert np.all(np.abs(_host(backend, lo.grads["W"]) - _host(backend, hi.grads["W"])) <= _gemm_bound(N, gW) + U16)
    assert lo.grads["W"].dtype == np.float16 and lo.grads["b"].dtype == np.float16


def test_conv_within_dot_product_bound(backend, rng):
    C, KH = 8, 3
    K = C * KH * KH
    x = rng.standard_normal((8, C, 6, 6))  # N*OH*OW = 288 terms in each dW sum
    lo, hi, x16, x64 = _pair(backend, lambda: Conv2D(C, 4, KH, pad=1, rng=np.random.default_rng(1),
                                                     dtype="float64"), x)
    y16, y64 = _host(backend, lo.forward(x16)), _host(backend, hi.forward(x64))
    absconv = Conv2D(C, 4, KH, pad=1, dtype="float64")  # |x| (*) |W|: the bound's magnitude
    absconv.params["W"] = backend.xp.abs(hi.params["W"])
    mag = _host(backend, absconv.forward(backend.xp.abs(x64)))
    assert np.all(np.abs(y16 - y64) <= _gemm_bound(K, mag) + U16)
    dout = rng.standard_normal(y64.shape).astype(np.float16)
    dx16 = _host(backend, lo.backward(backend.asarray(dout)))
    dx64 = _host(backend, hi.backward(backend.asarray(dout, dtype="float64")))
    # the backward products' magnitudes, elementwise: the same layer's backward on |dout|, |x| and |W|
    dx_mag = _host(backend, absconv.backward(backend.asarray(np.abs(dout), dtype="float64")))
    dW_mag = _host(backend, absconv.grads["W"])
    # x, W and dout hold the same (float16) values in both runs. dx (FN*KH*KW terms): the CUDA path rounds
    # the column products (dcol) to float16 before col2im sums the taps, and the sum is rounded again:
    # 2u times the sum of the terms' |.|, slack 2. dW (N*OH*OW terms): the partial products of batch
    # slices (or images) are each rounded to float16 before their float32 sum, so u times the sum of
    # their |.|, at most u |x|^T |dout|
    dx_bound = bound(np.float16, terms=2, scale=dx_mag, safety=1) + bound(np.float32, terms=4 * KH * KH,
                                                                          scale=dx_mag, safety=2)
    assert np.all(np.abs(dx16 - dx64) <= dx_bound)
    gW64 = _host(backend, hi.grads["W"])
    assert np.all(np.abs(_host(backend, lo.grads["W"]) - gW64) <= _sum_bound(8 * 36, dW_mag, dW_mag))


ELEMENTWISE = {
    "relu": (ReLU, lambda x: (np.maximum(x, 0), (x > 0) * 1.0)),
    "sigmoid": (Sigmoid, lambda x: (1 / (1 + np.exp(-x)), np.full_like(x, 0.25))),
    "tanh": (Tanh, lambda x: (np.tanh(x), np.ones_like(x))),
    "maxpool": (lambda: MaxPool2D(2, 2), None),
    "avgpool": (lambda: AvgPool2D(3, 1, 1), None),
    "dropout": (lambda: Dropout(0.3, seed=0), None),
}


@pytest.mark.parametrize("case", list(ELEMENTWISE))
def test_elementwise_layers_within_rounding(backend, rng, case):
    """One rounded function of one rounded input: |err| <= 4u (|f(x)| + |x f'(x)|) + 4u (slack 2, plus
    a float16 subnormal's absolute spacing)."""
    factory, _ = ELEMENTWISE[case]
    x = rng.standard_normal((2, 3, 6, 6)) * 3
    lo, hi, x16, x64 = _pair(backend, factory, x)
    y16, y64 = _host(backend, lo.forward(x16, train=True)), _host(backend, hi.forward(x64, train=True))
    assert y16.dtype == np.float64 and lo.forward(x16).dtype == np.float16
    tol = 4 * U16 * (np.abs(y64) + np.abs(_host(backend, x64)).max()) + 4 * U16
    if case == "dropout":  # different draws per call: compare the kept set, scaled by 1 / 0.7
        xh = _host(backend, x64)
        assert np.all(np.isin(np.round(y16 / np.where(xh == 0, 1, xh), 2), [0.0, 1.43]))
        return
    assert np.all(np.abs(y16 - y64) <= tol)
    dout = rng.standard_normal(y64.shape).astype(np.float16)
    dx16 = _host(backend, lo.backward(backend.asarray(dout)))
    dx64 = _host(backend, hi.backward(backend.asarray(dout, dtype="float64")))
    assert np.all(np.abs(dx16 - dx64) <= 8 * U16 * (np.abs(dx64) + np.abs(dout).max()) + 4 * U16)


@pytest.mark.parametrize("case", ["batchnorm_train", "batchnorm_eval", "lrn"])
def test_float32_internal_layers_within_rounding(backend, rng, case):
    """Input and output each rounded once, computed in float32 in between: 16u of the output's scale."""
    x = rng.standard_normal((4, 6, 3, 3)) * 2 + 1
    factory = (lambda: BatchNorm(6, dtype="float64")) if case.startswith("batchnorm") else LocalResponseNormalization
    lo, hi, x16, x64 = _pair(backend, factory, x)
    train = case != "batchnorm_eval"
    y16, y64 = _host(backend, lo.forward(x16, train)), _host(backend, hi.forward(x64, train))
    scale = np.abs(y64).max()
    assert np.abs(y16 - y64).max() <= 16 * U16 * scale
    if not train:
        return
    dout = rng.standard_normal(y64.shape).astype(np.float16)
    dx16 = _host(backend, lo.backward(backend.asarray(dout)))
    dx64 = _host(backend, hi.backward(backend.asarray(dout, dtype="float64")))
    assert np.abs(dx16 - dx64).max() <= 16 * U16 * (np.abs(dx64).max() + np.abs(dout).max())
    if case == "lrn":
        return
    # dgamma = sum(dout xn), dbeta = sum(dout) over N*H*W: float32 sums of float16 dout, rounded to float16
    axes, count = (0, 2, 3), dout.size // 6
    xn = _host(backend, hi.cache.xn)  # float64: the generic code's cache
    for k, mag in (("gamma", (np.abs(dout) * np.abs(xn)).sum(axis=axes)), ("beta", np.abs(dout).sum(axis=axes))):
        g = lo.grads[k]
        assert g.dtype == np.float16
        g64 = _host(backend, hi.grads[k])
        assert np.all(np.abs(_host(backend, g) - g64) <= _sum_bound(count + 4, g64, mag)), k


def test_softmax_cross_entropy_within_rounding(backend, rng):
    """Computed in float32 from float16 logits: loss and dL/dy within 16u of float64 (log-sum-exp's
    condition number is at most max|y|, here ~3)."""
    y = rng.standard_normal((16, 10)) * 3
    t = rng.integers(0, 10, 16)
    lo, hi = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    y16 = backend.asarray(y, dtype="float16")
    l16 = float(lo.forward(y16, t))
    l64 = float(hi.forward(backend.asarray(y16, dtype="float64"), t))
    assert abs(l16 - l64) <= 16 * U16 * (abs(l64) + 3)
    d16, d64 = _host(backend, lo.backward()), _host(backend, hi.backward())
    assert lo.backward().dtype == np.float16
    assert np.abs(d16 - d64).max() <= 16 * U16 / len(y) + 1e-7


def test_huge_logits_and_activations_stay_finite(backend, rng):
    """Logits of 1e4 and activations beyond 65,504 (as squares inside BatchNorm/LRN): no NaN in float16."""
    y = np.zeros((4, 10))
    y[:, 3] = 1e4
    y[0, 5] = -1e4
    loss = SoftmaxCrossEntropy()
    value = float(loss.forward(backend.asarray(y, dtype="float16"), np.array([3, 3, 3, 5])))
    assert np.isfinite(value)  # one example off by 1e4, rounded once to float16:
    assert_close(value, 1e4 / 4, terms=1, scale=1e4 / 4, dtype=np.float16, safety=1)
    assert np.all(np.isfinite(_host(backend, loss.backward())))
    x = backend.asarray(rng.standard_normal((8, 3, 2, 2)) * 3000, dtype="float16")  # x^2 ~ 1e7 > 65,504
    bn = BatchNorm(3).astype("float16")
    for layer in (bn, LocalResponseNormalization()):
        out = layer.forward(x, train=True)
        assert out.dtype == np.float16 and np.all(np.isfinite(_host(backend, out)))
        dx = layer.backward(backend.asarray(np.ones(x.shape), dtype="float16"))
        assert np.all(np.isfinite(_host(backend, dx)))
    assert np.all(np.isfinite(_host(backend, bn.buffers["running_var"])))  # float32: 9e6 fits


def test_bfloat16_and_other_dtypes_raise_naming_the_backend(backend):
    model = MLP(input_size=4, hidden_size_list=[3], output_size=2)
    with pytest.raises(DTypeError, match=f"bfloat16 is not supported on backend '{backend.name}'.*float16") as exc:
        model.astype("bfloat16")
    assert "ml_dtypes" in str(exc.value)  # the real reason: NumPy's and CuPy 14's bfloat16 come through it
    with pytest.raises(DTypeError) as exc:  # the CUDA reason, whether or not CUDA runs here
        precision.resolve("bfloat16", "cuda")
    assert "CuPy 14's bfloat16 is minimal" in str(exc.value) and "ml_dtypes" in str(exc.value)
    with pytest.raises(DTypeError, match="expected a floating dtype"):
        model.astype("int32")


def test_small_trained_model_float16_accuracy_within_a_tenth_of_a_point(backend):
    """End to end: a float32-trained MLP on separable synthetic data loses < 0.1 pt in float16."""
    from xpnet.optim import Adam

    gen = np.random.default_rng(0)
    centers = gen.standard_normal((4, 20)) * 3
    t = gen.integers(0, 4, 4000)
    x = (centers[t] + gen.standard_normal((4000, 20))).astype(np.float32)
    model = MLP(input_size=20, hidden_size_list=[32, 32], output_size=4, seed=0)
    opt = Adam(lr=0.01)
    for i in range(0, 2000, 50):
        model.loss(x[i : i + 50], t[i : i + 50])
        model.backward()
        opt.step(model.params, model.grads)
    acc32 = model.accuracy(x[2000:], t[2000:], batch_size=500)
    acc16 = model.astype("float16").accuracy(x[2000:], t[2000:], batch_size=500)
    assert acc32 > 0.9
    assert abs(acc16 - acc32) <= 0.001

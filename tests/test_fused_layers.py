"""Each backend's layer kernels (one fused kernel each on CUDA) against the NumPy backend's array code."""

import numpy as np
import pytest

from xpnet import backends
from xpnet.backends.shapes import out_size
from xpnet.layers import SoftmaxCrossEntropy

CPU = backends.get("numpy")
WINDOWS = [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_maxpool_equals_the_numpy_backend_exactly(backend, window, dtype):
    (KH, KW), stride, pad = window
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, (2, 3, 7, 6)).astype(dtype)  # small integers: many ties inside windows
    OH, OW = out_size(7, 6, KH, KW, stride, pad)
    dout = rng.standard_normal((2, 3, OH, OW)).astype(dtype)
    want, cache = CPU.maxpool2d_forward(x, KH, KW, stride, pad, OH, OW)
    want_dx = CPU.maxpool2d_backward(dout, cache, x.shape, KH, KW, stride, pad)
    got, gcache = backend.maxpool2d_forward(backend.asarray(x), KH, KW, stride, pad, OH, OW)
    got_dx = backend.maxpool2d_backward(backend.asarray(dout), gcache, x.shape, KH, KW, stride, pad)
    # ties go to the first maximum in (kh, kw) order; overlapping windows sum in (kh, kw) order on both
    np.testing.assert_array_equal(backend.asnumpy(got), want)
    np.testing.assert_array_equal(backend.asnumpy(got_dx), want_dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_softmax_cross_entropy_equals_the_numpy_backend(backend, dtype):
    rng = np.random.default_rng(2)
    N, K = 37, 10
    y = (rng.standard_normal((N, K)) * 4).astype(dtype)
    t = rng.integers(0, K, N)
    want_loss, want_p = CPU.softmax_cross_entropy(y, t)
    want_dy = CPU.softmax_cross_entropy_backward(want_p, t, 3.0, y.dtype)
    loss, p = backend.softmax_cross_entropy(backend.asarray(y), backend.asarray(t))
    dy = backend.softmax_cross_entropy_backward(p, backend.asarray(t), 3.0, y.dtype)
    eps = np.finfo(want_p.dtype).eps
    # per element: max, subtract, exp, a K-term sum, log, subtract, exp (~K + 6 roundings of values <= |y|)
    tol = (K + 6) * eps * 16
    assert loss.dtype == want_loss.dtype and p.dtype == want_p.dtype and dy.dtype == y.dtype
    np.testing.assert_allclose(backend.asnumpy(p), want_p, rtol=tol, atol=tol)
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=tol * N)  # N shares summed
    out_eps = np.finfo(dtype).eps
    np.testing.assert_allclose(backend.asnumpy(dy).astype(np.float64), want_dy.astype(np.float64),
                               rtol=2 * out_eps, atol=tol * 3.0 / N + out_eps * 3.0 / N)


def test_labels_out_of_range_raise_from_the_host_and_give_nan_on_a_device(backend):
    layer = SoftmaxCrossEntropy()
    y = backend.asarray(np.zeros((2, 3), np.float32))
    with pytest.raises(Exception, match=r"labels must be in \[0, 3\), got values in \[0, 3\]"):
        layer.forward(y, np.array([0, 3]))  # host labels are checked on every backend, without a sync
    loss = layer.forward(y, backend.asarray(np.array([0, 1])))
    np.testing.assert_allclose(float(loss), np.log(3.0), rtol=1e-6)
    if backend.host_memory:
        with pytest.raises(Exception, match="labels must be in"):
            layer.forward(y, backend.asarray(np.array([0, 3])))
    else:
        assert np.isnan(float(layer.forward(y, backend.asarray(np.array([0, 3])))))


def test_channels_last_inputs_pool_and_relu_as_contiguous_ones(backend):
    """A convolution's output is stored channels last: pooling and ReLU read it as it is and give the
    same values (their gradients in that memory order, so the convolution's backward needs no copy)."""
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, (2, 5, 6, 3)).astype(np.float32)  # (N, H, W, C) in memory
    dpool = rng.standard_normal((2, 3, 2, 3)).astype(np.float32)
    xs = backend.asarray(x).transpose(0, 3, 1, 2)  # an (N, C, H, W) view
    y, mask = backend.relu_forward(xs)
    want_y, want_mask = CPU.relu_forward(x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(backend.asnumpy(y), want_y)
    np.testing.assert_array_equal(backend.asnumpy(mask), want_mask)
    pooled, cache = backend.maxpool2d_forward(y, 2, 2, (2, 2), (0, 0), 2, 3)
    want_pooled, want_cache = CPU.maxpool2d_forward(want_y, 2, 2, (2, 2), (0, 0), 2, 3)
    np.testing.assert_array_equal(backend.asnumpy(pooled), want_pooled)
    dx = backend.maxpool2d_backward(backend.asarray(dpool), cache, xs.shape, 2, 2, (2, 2), (0, 0))
    want_dx = CPU.maxpool2d_backward(dpool, want_cache, xs.shape, 2, 2, (2, 2), (0, 0))
    np.testing.assert_array_equal(backend.asnumpy(dx), want_dx)
    d = backend.relu_backward(dx, mask)
    np.testing.assert_array_equal(backend.asnumpy(d), CPU.relu_backward(want_dx, want_mask))
    if not backend.host_memory:  # the device kernels keep the layout (NumPy's split kernels need not)
        assert d.transpose(0, 2, 3, 1).flags.c_contiguous and dx.transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_dropout_keeps_one_minus_ratio_and_resumes_from_a_saved_state(backend, dtype):
    ratio, n = 0.3, 40000
    x = backend.asarray(np.random.default_rng(5).standard_normal((100, n // 100)).astype(dtype))
    rng = backend.rng(7)
    y, mask = backend.dropout_forward(x, ratio, rng)
    m = backend.asnumpy(mask).astype(np.float64)
    scale = float(dtype(1.0 / (1.0 - ratio)))
    assert set(np.unique(m)) == {0.0, scale} and y.dtype == mask.dtype == dtype
    np.testing.assert_array_equal(backend.asnumpy(y), backend.asnumpy(x) * backend.asnumpy(mask))
    kept = np.count_nonzero(m) / n  # binomial: 5 standard deviations
    assert abs(kept - (1 - ratio)) < 5 * np.sqrt(ratio * (1 - ratio) / n), kept
    state = rng.get_state()
    _, second = backend.dropout_forward(x, ratio, rng)
    assert (backend.asnumpy(second) != m).mean() > 0.3  # a fresh draw, not the same mask again
    again = backend.rng(0)
    again.set_state(state)
    np.testing.assert_array_equal(backend.asnumpy(backend.dropout_forward(x, ratio, again)[1]),
                                  backend.asnumpy(second))
    np.testing.assert_array_equal(backend.asnumpy(backend.dropout_forward(x, ratio, backend.rng(7))[1]), m)


@pytest.mark.parametrize("labels", ["indices", "one-hot", "wide"])
def test_gather_batch_equals_fancy_indexing(backend, labels):
    rng = np.random.default_rng(8)
    x = rng.integers(0, 255, (20, 1, 3, 2)).astype(np.uint8)  # 6 values per example
    t = {"indices": rng.integers(0, 10, 20), "one-hot": np.eye(5, dtype=np.float32)[rng.integers(0, 5, 20)],
         "wide": rng.random((20, 9)).astype(np.float32)}[labels]  # wide: a label row longer than an example
    idx = rng.permutation(20)[:7]
    xb, tb = backend.gather_batch(backend.asarray(x), backend.asarray(t), backend.asarray(idx))
    np.testing.assert_array_equal(backend.asnumpy(xb), x[idx])
    np.testing.assert_array_equal(backend.asnumpy(tb), t[idx])
    assert xb.dtype == x.dtype and tb.dtype == t.dtype

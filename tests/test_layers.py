"""Layer contracts on every backend: dtypes, no mutation, padding, dropout, batchnorm, losses, errors."""

import numpy as np
import pytest
from tolerance import assert_close

from xpnet.errors import DTypeError, ShapeError
from xpnet.layers import (
    Affine,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Conv2DTranspose,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2D,
    MeanSquaredError,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    Upsample2D,
)


def _init_rng():
    return np.random.default_rng(0)


# name -> (factory(dtype) -> layer, input shape). Layers are built inside the ``backend`` fixture, so
# their parameters live on the backend under test.
LAYERS = {
    "affine_2d": (lambda dt: Affine(5, 3, rng=_init_rng(), dtype=dt), (4, 5)),
    "affine_4d": (lambda dt: Affine(2 * 3 * 3, 4, rng=_init_rng(), dtype=dt), (2, 2, 3, 3)),
    "conv_3x3_pad1": (lambda dt: Conv2D(2, 3, 3, 1, 1, rng=_init_rng(), dtype=dt), (2, 2, 5, 5)),
    "conv_rect": (lambda dt: Conv2D(2, 3, (3, 2), (2, 1), (1, 0), rng=_init_rng(), dtype=dt), (2, 2, 6, 5)),
    "maxpool_2x2": (lambda dt: MaxPool2D(2, 2), (2, 2, 4, 4)),
    "maxpool_3x3_s2_p1": (lambda dt: MaxPool2D(3, 2, 1), (2, 2, 5, 5)),
    "maxpool_2x2_s1": (lambda dt: MaxPool2D(2, 1), (2, 2, 4, 5)),
    "avgpool_2x2": (lambda dt: AvgPool2D(2, 2), (2, 2, 4, 4)),
    "avgpool_3x3_s2_p1": (lambda dt: AvgPool2D(3, 2, 1), (2, 2, 5, 5)),
    "avgpool_2x2_s1": (lambda dt: AvgPool2D(2, 1), (2, 2, 4, 5)),
    "relu": (lambda dt: ReLU(), (3, 4)),
    "sigmoid": (lambda dt: Sigmoid(), (3, 4)),
    "tanh": (lambda dt: Tanh(), (2, 3, 2)),
    "dropout": (lambda dt: Dropout(0.4, seed=3), (4, 6)),
    "batchnorm_2d": (lambda dt: BatchNorm(4, dtype=dt), (5, 4)),
    "batchnorm_4d": (lambda dt: BatchNorm(3, dtype=dt), (2, 3, 3, 3)),
    "flatten": (lambda dt: Flatten(), (2, 3, 2, 2)),
    "leaky_relu": (lambda dt: LeakyReLU(0.2), (3, 4)),
    "deconv_4x4_s2_p1": (lambda dt: Conv2DTranspose(3, 2, 4, 2, 1, rng=_init_rng(), dtype=dt), (2, 3, 3, 3)),
    "deconv_bilinear": (lambda dt: Conv2DTranspose(2, 2, 4, 2, 1, weight_init="bilinear", dtype=dt), (2, 2, 3, 3)),
    "upsample_bilinear": (lambda dt: Upsample2D(2), (2, 2, 3, 4)),
    "sequential": (lambda dt: Sequential(Conv2D(1, 2, 3, pad=1, rng=_init_rng(), dtype=dt), ReLU(), MaxPool2D(2),
                                         Flatten(), Affine(2 * 2 * 2, 3, rng=_init_rng(), dtype=dt)), (2, 1, 4, 4)),
}


def _input(backend, rng, shape, dtype):
    return backend.asarray(rng.standard_normal(shape), dtype=dtype)


def _grads(layer):
    return layer.all_grads if isinstance(layer, Sequential) else layer.grads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(LAYERS))
def test_dtype_preserved_forward_and_backward(backend, case, dtype, rng):
    factory, shape = LAYERS[case]
    layer = factory(dtype)
    x = _input(backend, rng, shape, dtype)
    y = layer.forward(x, train=True)
    assert backend.owns(y)
    assert y.dtype == np.dtype(dtype), f"{case} forward returned {y.dtype}"
    dout = _input(backend, rng, y.shape, dtype)
    dx = layer.backward(dout)
    assert backend.owns(dx)
    assert dx.shape == x.shape
    assert dx.dtype == np.dtype(dtype), f"{case} backward returned {dx.dtype}"
    for name, g in _grads(layer).items():
        assert g.dtype == np.dtype(dtype), f"{case} grad {name} is {g.dtype}"
    y_eval = layer.forward(x, train=False)
    assert y_eval.dtype == np.dtype(dtype)


@pytest.mark.parametrize("case", list(LAYERS))
def test_forward_and_backward_do_not_mutate_inputs(backend, case, rng):
    factory, shape = LAYERS[case]
    layer = factory("float32")
    x = _input(backend, rng, shape, "float32")
    x_before = backend.asnumpy(x).copy()
    y = layer.forward(x, train=True)
    dout = _input(backend, rng, y.shape, "float32")
    dout_before = backend.asnumpy(dout).copy()
    layer.backward(dout)
    np.testing.assert_array_equal(backend.asnumpy(dout), dout_before)
    np.testing.assert_array_equal(backend.asnumpy(x), x_before)


@pytest.mark.parametrize("loss_cls", [SoftmaxCrossEntropy, MeanSquaredError])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loss_layers_keep_dtype(backend, loss_cls, dtype, rng):
    y = _input(backend, rng, (4, 3), dtype)
    t = np.array([0, 2, 1, 2]) if loss_cls is SoftmaxCrossEntropy else rng.standard_normal((4, 3))
    layer = loss_cls()
    loss = layer.forward(y, t)
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    dy = layer.backward()
    assert dy.dtype == np.dtype(dtype) and dy.shape == y.shape


def test_linear_is_affine():
    assert Linear is Affine


# -- pooling padding ---------------------------------------------------------------------------------


def test_maxpool_padding_is_minus_infinity(backend):
    # x[h, w] = -(4h + w + 1): all negative, so a zero pad would win every border window.
    x = backend.asarray(-(np.arange(16, dtype=np.float32) + 1).reshape(1, 1, 4, 4))
    pool = MaxPool2D(3, 2, pad=1)
    out = pool.forward(x)
    # OH = (4 + 2 - 3) // 2 + 1 = 2. Windows cover rows/cols {-1,0,1} and {1,2,3}; pad excluded:
    #   (0,0): rows 0-1, cols 0-1 -> max x[0,0] = -1     (0,1): rows 0-1, cols 1-3 -> x[0,1] = -2
    #   (1,0): rows 1-3, cols 0-1 -> max x[1,0] = -5     (1,1): rows 1-3, cols 1-3 -> x[1,1] = -6
    np.testing.assert_array_equal(backend.asnumpy(out), [[[[-1, -2], [-5, -6]]]])
    dx = backend.asnumpy(pool.backward(backend.xp.ones_like(out)))
    expected = np.zeros((4, 4), np.float32)
    expected[0, 0] = expected[0, 1] = expected[1, 0] = expected[1, 1] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("train", [True, False])
def test_relu_backward_after_either_mode(backend, train):
    # Inference mode keeps no mask; a backward pass after it derives the mask from the output.
    x = np.random.default_rng(7).standard_normal((3, 4, 2, 5)).astype(np.float32)
    relu = ReLU()
    out = relu.forward(backend.asarray(x), train)
    np.testing.assert_array_equal(backend.asnumpy(out), np.maximum(x, 0))
    dout = np.random.default_rng(8).standard_normal(x.shape).astype(np.float32)
    dx = backend.asnumpy(relu.backward(backend.asarray(dout)))
    np.testing.assert_array_equal(dx, dout * (x > 0))
    assert dx.dtype == np.float32


def _bits(a):
    """float32 bits, every NaN as one NaN (which payload a NaN keeps is not part of the contract)."""
    return np.where(np.isnan(a), np.float32(np.nan), a).view(np.uint32)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # -inf * 0 is meant
@pytest.mark.parametrize("slope", [0.2, 0.0])
@pytest.mark.parametrize("train", [True, False])
def test_leaky_relu_bits_and_backward_after_either_mode(backend, train, slope):
    """x * slope where x <= 0 in float32, bit for bit (so -0 * slope is -0, NaN stays NaN, -inf * 0 is NaN),
    the gradient dout * slope there; inference keeps no mask, a backward pass after it derives one from out."""
    rng = np.random.default_rng(9)
    x = rng.integers(-2, 3, (3, 4, 5, 6)).astype(np.float32) * np.float32(1.5)
    x.flat[rng.integers(0, x.size, 12)] = -0.0
    for i, value in enumerate((np.nan, np.inf, -np.inf)):
        x.flat[i::37] = value
    layer, s = LeakyReLU(slope), np.float32(slope)
    out = backend.asnumpy(layer.forward(backend.asarray(x), train))
    dout = rng.standard_normal(x.shape).astype(np.float32)
    dx = backend.asnumpy(layer.backward(backend.asarray(dout)))
    with np.errstate(invalid="ignore"):  # -inf * 0
        want_out, want_dx = np.where(x > 0, x, x * s), np.where(x > 0, dout, dout * s)
    assert out.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(_bits(out), _bits(want_out))
    np.testing.assert_array_equal(_bits(dx), _bits(want_dx))


def _maxpool_backward_by_loops(x, dout, K, S, P):
    """Reference: each output's gradient to the first maximum of its window in (kh, kw) order."""
    N, C, H, W = x.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)), constant_values=-np.inf)
    dx = np.zeros_like(xpad)
    for n, c, i, j in np.ndindex(*dout.shape):
        window = xpad[n, c, i * S : i * S + K, j * S : j * S + K]
        kh, kw = divmod(int(np.argmax(window)), K)  # argmax returns the first maximum, row-major
        dx[n, c, i * S + kh, j * S + kw] += dout[n, c, i, j]
    return dx[:, :, P : P + H, P : P + W]


@pytest.mark.parametrize("K, S, P", [(2, 2, 0), (3, 2, 1), (3, 1, 0), (2, 3, 0)])
def test_maxpool_ties_send_the_gradient_to_the_first_maximum(backend, K, S, P):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (2, 3, 7, 8)).astype(np.float32)  # small integers: ties in most windows
    pool = MaxPool2D(K, S, pad=P)
    out = pool.forward(backend.asarray(x), True)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = backend.asnumpy(pool.backward(backend.asarray(dout)))
    # overlapping windows (S < K) add up to K*K/S^2 gradients in one pixel, each exact float32 values
    assert_close(dx, _maxpool_backward_by_loops(x, dout, K, S, P), terms=(-(-K // S)) ** 2, scale=np.abs(dout).max())


def test_avgpool_padding_counts_as_zero(backend):
    # x[h, w] = 4h + w + 1 (1..16); padding is zero and the divisor is always 3*3 = 9.
    x = backend.asarray((np.arange(16, dtype=np.float64) + 1).reshape(1, 1, 4, 4))
    pool = AvgPool2D(3, 2, pad=1)
    out = backend.asnumpy(pool.forward(x))
    #   (0,0): 1+2+5+6 = 14          (0,1): 2+3+4+6+7+8 = 30
    #   (1,0): 5+6+9+10+13+14 = 57   (1,1): 6+7+8+10+11+12+14+15+16 = 99
    assert_close(out[0, 0], np.array([[14, 30], [57, 99]]) / 9, terms=9 + 1, scale=11)  # 9 taps and / 9
    dx = backend.asnumpy(pool.backward(backend.xp.ones_like(pool.forward(x))))
    # Each pixel gets 1/9 per window covering it: rows are covered [1, 2, 1, 1] times, columns too.
    cover = np.array([1, 2, 1, 1])
    assert_close(dx[0, 0], np.outer(cover, cover) / 9, terms=4 + 1, scale=4 / 9)


def test_pool_rejects_pad_larger_than_half_window():
    with pytest.raises(ValueError, match="pad"):
        MaxPool2D(2, 2, pad=2)


# -- dropout -----------------------------------------------------------------------------------------


def test_dropout_train_preserves_mean_and_inference_is_identity(backend):
    ratio = 0.3
    layer = Dropout(ratio, seed=7)
    x = backend.xp.ones(100_000, dtype=np.float32)
    y = backend.asnumpy(layer.forward(x, train=True))
    assert y.dtype == np.float32
    kept = y != 0
    assert abs(1 - kept.mean() - ratio) < 0.01
    assert_close(y[kept], 1 / (1 - ratio), terms=2, scale=1 / (1 - ratio))  # inverted dropout scaling
    assert abs(y.mean() - 1.0) < 0.01
    dx = backend.asnumpy(layer.backward(backend.xp.ones_like(x)))
    np.testing.assert_array_equal(dx, y)  # same mask and scale on the way back

    y_eval = layer.forward(x, train=False)
    np.testing.assert_array_equal(backend.asnumpy(y_eval), backend.asnumpy(x))
    np.testing.assert_array_equal(backend.asnumpy(layer.backward(x)), backend.asnumpy(x))


def test_dropout_same_seed_same_mask(backend, rng):
    x = _input(backend, rng, (8, 8), "float32")
    a = backend.asnumpy(Dropout(0.5, seed=11).forward(x, train=True))
    b = backend.asnumpy(Dropout(0.5, seed=11).forward(x, train=True))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ratio", [-0.1, 1.0])
def test_dropout_rejects_bad_ratio(ratio):
    with pytest.raises(ValueError, match=str(ratio)):
        Dropout(ratio)


# -- batch normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 2)], ids=["2d", "4d"])
def test_batchnorm_running_stats_and_inference(backend, shape, rng):
    bn = BatchNorm(3, momentum=0.9, dtype="float64")
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    bshape = (1, 3) if len(shape) == 2 else (1, 3, 1, 1)
    gamma, beta = np.array([0.5, 2.0, -1.0]), np.array([0.1, -0.2, 0.3])
    bn.params["gamma"], bn.params["beta"] = backend.asarray(gamma), backend.asarray(beta)

    rm, rv = np.zeros(3), np.ones(3)
    for _ in range(2):
        x = rng.standard_normal(shape) * 3 + 5
        out = backend.asnumpy(bn.forward(backend.asarray(x), train=True))
        mu, var = x.mean(axis=axes), x.var(axis=axes)  # biased batch variance
        # running = 0.9 * running + 0.1 * batch statistic
        rm, rv = 0.9 * rm + 0.1 * mu, 0.9 * rv + 0.1 * var
        # a mean over the batch (terms = its size) and the momentum update, on values up to ~5^2 + 3^2
        n = x.size // 3
        assert_close(backend.asnumpy(bn.buffers["running_mean"]), rm, terms=n + 3, scale=np.abs(x).max())
        spread = np.abs(x - mu.reshape(bshape)).max() ** 2
        assert_close(backend.asnumpy(bn.buffers["running_var"]), rv, terms=2 * n + 3, scale=spread)
        # train mode normalises with the batch statistics
        xn = (x - mu.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5)
        # the statistics' rounding relative to the spread (|x - mu| / std up to ~4) and 5 element-wise steps
        assert_close(out, xn * gamma.reshape(bshape) + beta.reshape(bshape), terms=2 * n + 5, scale=4 * 2 + 1)

    x = rng.standard_normal(shape)
    stats = {k: backend.asnumpy(v).copy() for k, v in bn.buffers.items()}
    out = backend.asnumpy(bn.forward(backend.asarray(x), train=False))
    want = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) * gamma.reshape(bshape) + beta.reshape(bshape)
    # the running statistics' own rounding (above, relative to |x| ~ 14 over std ~ 3) and 5 element-wise steps
    assert_close(out, want, terms=2 * n + 5, scale=4 * 2 + 1)
    for k, v in bn.buffers.items():  # inference leaves the running statistics alone
        np.testing.assert_array_equal(backend.asnumpy(v), stats[k], err_msg=k)


def test_batchnorm_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="1.5"):
        BatchNorm(3, momentum=1.5)
    with pytest.raises(ValueError, match="0"):
        BatchNorm(3, eps=0)


# -- losses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cross_entropy_stable_for_huge_logits(backend, dtype):
    y = backend.asarray([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=dtype)
    t = np.array([0, 2])
    layer = SoftmaxCrossEntropy()
    loss = float(layer.forward(y, t))
    # row 0: softmax is (1, 0, 0) -> -log p0 = 0; row 1: (0, .5, .5) -> -log p2 = log 2; mean log(2) / 2
    assert np.isfinite(loss)
    assert_close(loss, np.log(2) / 2, terms=6, scale=1, dtype=dtype)  # log-sum-exp over 3, mean over 2
    dy = backend.asnumpy(layer.backward())
    assert np.isfinite(dy).all()
    # (p - onehot) / N
    assert_close(dy, np.array([[0, 0, 0], [0, 0.5, -0.5]]) / 2, terms=4, scale=0.5, dtype=dtype)


def test_softmax_cross_entropy_integer_and_one_hot_agree(backend, rng):
    y = _input(backend, rng, (5, 4), "float64")
    t = np.array([0, 3, 1, 1, 2])
    a, b = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    la, lb = float(a.forward(y, t)), float(b.forward(y, np.eye(4)[t]))
    assert_close(la, lb, terms=4 + 5, scale=abs(la) + 3)  # 4 classes, a mean over 5 (|y| up to ~3)
    assert_close(backend.asnumpy(a.backward()), backend.asnumpy(b.backward()), terms=4 + 2, scale=1 / 5)
    yn = backend.asnumpy(y)
    logp = yn - np.log(np.exp(yn).sum(axis=1, keepdims=True))
    assert_close(la, -logp[np.arange(5), t].mean(), terms=4 + 5, scale=abs(la) + 3)


def test_mean_squared_error_value(backend):
    y = backend.asarray([[1.0, 2.0], [3.0, 5.0]])
    t = np.array([[0.0, 2.0], [3.0, 3.0]])
    layer = MeanSquaredError()
    # 0.5 * (1^2 + 0 + 0 + 2^2) / N=2 = 1.25; gradient (y - t) / N
    assert float(layer.forward(y, t)) == 1.25  # small integers and halvings: exact
    np.testing.assert_array_equal(backend.asnumpy(layer.backward()), [[0.5, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("labels, values", [([0, 3], "[0, 3]"), ([-1, 1], "[-1, 1]")])
def test_label_out_of_range(backend, labels, values):
    y = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(ShapeError) as exc:
        SoftmaxCrossEntropy().forward(y, np.array(labels))
    assert "[0, 3)" in str(exc.value) and values in str(exc.value)


def test_cross_entropy_reads_no_device_labels_back(cuda, rng):
    backend = cuda
    counters = getattr(backend.xp, "counters", None)  # the emulated device counts host syncs
    if counters is None:
        pytest.skip("host syncs are counted on the emulated CUDA device only")
    y = backend.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    t = backend.asarray(np.array([0, 2, 1, 2]))
    layer = SoftmaxCrossEntropy()
    with counters.counting() as c:
        loss = layer.forward(y, t, train=True)
        layer.backward()
    assert c.syncs == 0, c
    assert float(loss) > 0


def test_a_deep_convnet_training_step_makes_no_host_sync():
    from benchmarks import launches  # counts on the emulated CUDA device

    counts = launches.step_counts(batch_size=4)
    assert all(counts[phase]["syncs"] == 0 for phase in (*launches.PHASES, "step")), counts


def test_loss_label_shape_and_dtype_errors(backend):
    y = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        SoftmaxCrossEntropy().forward(y, np.zeros((2, 4)))
    with pytest.raises(ShapeError, match="integer labels"):
        SoftmaxCrossEntropy().forward(y, np.array([0.0, 1.0]))
    with pytest.raises(ShapeError, match=r"\(3,\)"):
        SoftmaxCrossEntropy().forward(y, np.array([0, 1, 2]))
    with pytest.raises(ShapeError, match=r"\(2, 2\)"):
        MeanSquaredError().forward(y, np.zeros((2, 2)))


# -- error messages ----------------------------------------------------------------------------------


def _named(layer, name):
    return Sequential((name, layer))[name]


def test_conv_errors_name_layer_expected_and_got(backend):
    conv = _named(Conv2D(3, 4, 3, rng=_init_rng()), "conv1")
    with pytest.raises(ShapeError) as exc:
        conv.forward(backend.xp.zeros((3, 8, 8), dtype=np.float32))
    assert "Conv2D 'conv1'" in str(exc.value) and "4-D" in str(exc.value) and "(3, 8, 8)" in str(exc.value)
    with pytest.raises(ShapeError) as exc:
        conv.forward(backend.xp.zeros((1, 2, 8, 8), dtype=np.float32))
    assert "Conv2D 'conv1'" in str(exc.value) and "3 input channels" in str(exc.value)
    assert "(1, 2, 8, 8)" in str(exc.value)
    with pytest.raises(DTypeError) as exc:
        conv.forward(backend.xp.zeros((1, 3, 8, 8), dtype=np.int64))
    assert "Conv2D 'conv1'" in str(exc.value) and "floating" in str(exc.value) and "int64" in str(exc.value)
    with pytest.raises(DTypeError) as exc:
        conv.forward(backend.xp.zeros((1, 3, 8, 8), dtype=np.float64))
    assert "Conv2D 'conv1'" in str(exc.value) and "float32" in str(exc.value) and "float64" in str(exc.value)
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        conv.forward(backend.xp.zeros((1, 3, 2, 2), dtype=np.float32))


def test_affine_and_batchnorm_errors_name_layer(backend):
    fc = _named(Affine(5, 3, rng=_init_rng()), "fc1")
    with pytest.raises(ShapeError) as exc:
        fc.forward(backend.xp.zeros((2, 4), dtype=np.float32))
    assert "Affine 'fc1'" in str(exc.value) and "(N, 5)" in str(exc.value) and "(2, 4)" in str(exc.value)
    with pytest.raises(DTypeError, match="Affine 'fc1'.*expected an array, got list"):
        fc.forward([[1.0] * 5])
    bn = _named(BatchNorm(4), "bn1")
    with pytest.raises(ShapeError) as exc:
        bn.forward(backend.xp.zeros((2, 3), dtype=np.float32), train=True)
    assert "BatchNorm 'bn1'" in str(exc.value) and "(N, 4)" in str(exc.value) and "(2, 3)" in str(exc.value)


def test_pool_and_activation_errors_name_layer(backend):
    pool = _named(MaxPool2D(2), "pool1")
    with pytest.raises(ShapeError, match=r"MaxPool2D 'pool1'.*4-D.*\(2, 4\)"):
        pool.forward(backend.xp.zeros((2, 4), dtype=np.float32))
    relu = _named(ReLU(), "relu1")
    with pytest.raises(DTypeError, match=r"ReLU 'relu1'.*int32"):
        relu.forward(backend.xp.zeros((2, 4), dtype=np.int32))


def test_backward_rejects_wrong_gradient_shape(backend, rng):
    fc = _named(Affine(5, 3, rng=_init_rng()), "fc1")
    fc.forward(_input(backend, rng, (4, 5), "float32"))
    with pytest.raises(ShapeError, match=r"Affine 'fc1'.*\(4, 3\).*\(4, 2\)"):
        fc.backward(backend.xp.zeros((4, 2), dtype=np.float32))


def test_sequential_names_and_params(backend):
    net = Sequential(Affine(2, 3, rng=_init_rng()), ReLU(), ("head", Affine(3, 1, rng=_init_rng())))
    assert list(net.layers) == ["affine1", "relu1", "head"]
    assert list(net.all_params) == ["affine1.W", "affine1.b", "head.W", "head.b"]
    assert len(net) == 3 and net["head"].name == "head"
    with pytest.raises(ValueError, match="unique"):
        Sequential(("a", ReLU()), ("a", ReLU()))
    with pytest.raises(ValueError, match="a.b"):
        Sequential(("a.b", ReLU()))

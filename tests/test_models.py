"""Models on every backend: shapes, parameter counts, device and dtype moves, state, accuracy, training."""

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import backends, models
from xpnet.errors import DeviceMismatchError, DTypeError, FileFormatError, ShapeError
from xpnet.layers import MaxPool2D
from xpnet.models import MLP, DeepConvNet, SimpleConvNet
from xpnet.optim import SGD, Adam, Momentum


def _small_mlp(**kw):
    return MLP(input_size=6, hidden_size_list=(5, 4), output_size=3, **kw)


def test_deep_convnet_stage_shapes_and_parameter_count(backend, rng):
    model = DeepConvNet()
    assert model.backend is backend
    assert model.num_params() == 123_552
    x = backend.asarray(rng.standard_normal((2, 1, 28, 28)), dtype=np.float32)
    pooled = []
    for layer in model.net:
        x = layer.forward(x)
        if isinstance(layer, MaxPool2D):
            pooled.append(tuple(x.shape[1:]))
    assert pooled == [(16, 14, 14), (32, 8, 8), (64, 4, 4)]
    assert x.shape == (2, 10) and x.dtype == np.float32
    out = model.predict(rng.standard_normal((3, 1, 28, 28)).astype(np.float32))
    assert out.shape == (3, 10) and backend.owns(out)


def test_simple_convnet_and_mlp_shapes(backend, rng):
    scn = SimpleConvNet()
    # conv 30*1*5*5 + 30, fc1 (30*12*12)*100 + 100, fc2 100*10 + 10
    assert scn.num_params() == 780 + 432_100 + 1_010
    assert scn.predict(rng.standard_normal((2, 1, 28, 28)).astype(np.float32)).shape == (2, 10)
    small = SimpleConvNet(input_dim=(3, 8, 8), filter_num=4, filter_size=3, pad=1, hidden_size=6, output_size=5)
    assert small.predict(rng.standard_normal((2, 3, 8, 8)).astype(np.float32)).shape == (2, 5)
    mlp = MLP()
    # 784*100 + 100, 100*100 + 100, 100*10 + 10
    assert mlp.num_params() == 78_500 + 10_100 + 1_010
    assert mlp.predict(rng.standard_normal((3, 784)).astype(np.float32)).shape == (3, 10)
    assert list(_small_mlp(use_batchnorm=True, use_dropout=True).net.layers) == [
        "fc1", "bn1", "relu1", "dropout1", "fc2", "bn2", "relu2", "dropout2", "fc3"]


def _small_mlp_bn_reference(arrays, x):
    """``_small_mlp(use_batchnorm=True)``'s inference in float64 NumPy, written out: (affine, batchnorm on
    the running statistics, ReLU) twice, then affine."""
    a = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    h = x.astype(np.float64)
    for i in (1, 2):
        h = h @ a[f"fc{i}.W"] + a[f"fc{i}.b"]
        h = (h - a[f"bn{i}.running_mean"]) / np.sqrt(a[f"bn{i}.running_var"] + 1e-5) * a[f"bn{i}.gamma"] \
            + a[f"bn{i}.beta"]
        h = np.maximum(h, 0)
    return h @ a["fc3.W"] + a["fc3.b"]


def test_to_backend_moves_every_array_and_keeps_predictions(backend, rng):
    model = _small_mlp(use_batchnorm=True, backend="numpy")
    for name, p in model.params.items():
        if name.endswith((".b", ".beta", ".gamma")):  # away from 0 and 1, so dropping one shows
            model.net.set_array(name, rng.standard_normal(p.shape).astype(np.float32) * 0.5 + 0.5)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    model.loss(2 * x + 1, np.array([0, 1, 2, 0]), train=True)  # running statistics away from their defaults
    arrays = {k: v.copy() for k, v in {**model.params, **model.buffers}.items()}  # NumPy: before the move
    assert model.to(backend) is model
    assert model.backend is backend
    for name, arr in {**model.params, **model.buffers}.items():
        assert backend.owns(arr), name
        np.testing.assert_array_equal(backend.asnumpy(arr), arrays[name], err_msg=name)  # a move, exactly
    # the moved model's predictions against the float64 reference from the arrays it had before: a 6-term
    # product, 5 element-wise steps, then a 5-term and a 4-term product and their BatchNorms in float32
    want = _small_mlp_bn_reference(arrays, x)
    assert_close(backend.asnumpy(model.predict(x)), want, terms=6 + 5 + 5 + 5 + 4, scale=np.abs(want).max() + 1)


def test_astype_float64_casts_every_param_and_buffer(backend, rng):
    model = _small_mlp(use_batchnorm=True)
    assert model.dtype == np.float32
    assert model.astype("float64") is model
    assert model.dtype == np.float64
    for name, arr in {**model.params, **model.buffers}.items():
        assert arr.dtype == np.float64, name
        assert backend.owns(arr), name
    out = model.predict(rng.standard_normal((2, 6)).astype(np.float32))  # input cast to the model's dtype
    assert out.dtype == np.float64
    with pytest.raises(DTypeError, match="int32"):
        model.astype("int32")


def test_state_dict_round_trip_reproduces_predictions(backend, rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    a = _small_mlp(use_batchnorm=True, seed=0)
    a.loss(x, np.array([0, 1, 2, 0, 1]))  # non-default running statistics
    b = _small_mlp(use_batchnorm=True, seed=1)
    assert not np.array_equal(backend.asnumpy(a.predict(x)), backend.asnumpy(b.predict(x)))
    state = a.state_dict()
    assert list(state) == list(a.params) + list(a.buffers)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    b.load_state_dict(state)
    want = backend.asnumpy(a.predict(x))
    np.testing.assert_array_equal(backend.asnumpy(b.predict(x)), want)
    # the two models are independent afterwards: training b leaves a (and the saved state) alone
    saved = {k: v.copy() for k, v in state.items()}
    b.gradient(x, np.array([0, 1, 2, 0, 1]))
    SGD(lr=0.5).step(b.params, b.grads)
    np.testing.assert_array_equal(backend.asnumpy(a.predict(x)), want)
    for k, v in state.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)


def test_load_state_dict_keeps_model_dtype(backend):
    model = _small_mlp().astype("float64")
    model.load_state_dict({k: v.astype(np.float32) for k, v in model.state_dict().items()})
    assert all(p.dtype == np.float64 for p in model.params.values())


def test_load_state_dict_errors_name_the_key():
    model = _small_mlp()
    state = model.state_dict()
    bad = dict(state, **{"fc2.W": np.zeros((4, 5), np.float32)})
    with pytest.raises(FileFormatError, match=r"'fc2.W' has shape \(4, 5\) in the state but \(5, 4\)"):
        model.load_state_dict(bad)
    missing = {k: v for k, v in state.items() if k != "fc3.b"}
    with pytest.raises(FileFormatError, match=r"missing \['fc3.b'\]"):
        model.load_state_dict(missing)
    with pytest.raises(FileFormatError, match=r"unexpected \['fc9.W'\]"):
        model.load_state_dict(dict(state, **{"fc9.W": np.zeros(1)}))


def test_predict_accepts_numpy_and_lists(backend):
    model = _small_mlp()
    x = np.linspace(-1, 1, 12).reshape(2, 6)
    out = model.predict(x)  # float64 host input: moved to the model's device and cast to float32
    assert backend.owns(out) and out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(backend.asnumpy(model.predict(x.tolist())), backend.asnumpy(out))
    with pytest.raises(DTypeError, match="int64"):
        model.predict(np.zeros((2, 6), dtype=np.int64))


def test_gpu_model_moves_numpy_input_and_matches_cpu(cuda, rng):
    cpu_model = _small_mlp(backend="numpy")
    gpu_model = _small_mlp(backend="numpy").to(cuda)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    out = gpu_model.predict(x)
    assert cuda.owns(out)
    assert_close(cuda.asnumpy(out), cpu_model.predict(x), terms=6 + 5 + 4, scale=4)


def test_device_mismatch_names_layer_and_devices(cuda, rng):
    model = DeepConvNet(backend=cuda)
    x = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)
    with pytest.raises(DeviceMismatchError) as exc:
        model.net["conv1"].forward(x)  # host input straight into a layer whose weights are on the GPU
    msg = str(exc.value)
    assert "Conv2D 'conv1'" in msg and "numpy" in msg and "cuda" in msg
    fc = model.net["fc2"]
    fc.to("numpy")
    with pytest.raises(DeviceMismatchError, match=r"Affine 'fc2'.*cuda.*numpy"):
        fc.forward(cuda.asarray(rng.standard_normal((1, 50)).astype(np.float32)))


def test_accuracy_with_uneven_batches(backend, rng):
    model = _small_mlp(seed=4)
    x = rng.standard_normal((7, 6)).astype(np.float32)
    pred = backend.asnumpy(model.predict(x)).argmax(axis=1)
    t = pred.copy()
    t[[1, 5]] = (t[[1, 5]] + 1) % 3  # exactly two wrong, one in the last, short batch of 1
    assert model.accuracy(x, t, batch_size=3) == pytest.approx(5 / 7)
    assert model.accuracy(x, np.eye(3)[t], batch_size=4) == pytest.approx(5 / 7)
    assert model.accuracy(x, pred, batch_size=100) == 1.0
    with pytest.raises(ShapeError, match="7 inputs but 6 labels"):
        model.accuracy(x, t[:6])
    with pytest.raises(ValueError, match="batch_size"):
        model.accuracy(x, t, batch_size=0)


def test_build_by_name():
    model = models.build("mlp", input_size=4, hidden_size_list=[3], output_size=2)
    assert isinstance(model, MLP) and model.num_params() == 4 * 3 + 3 + 3 * 2 + 2
    assert isinstance(models.build("deep_convnet"), DeepConvNet)
    assert models.REGISTRY["simple_convnet"] is SimpleConvNet
    with pytest.raises(ValueError) as exc:
        models.build("resnet50")
    assert "resnet50" in str(exc.value) and "deep_convnet" in str(exc.value) and "mlp" in str(exc.value)


def test_model_repr_mentions_size_and_backend(backend):
    text = repr(_small_mlp())
    assert "MLP(" in text and "float32" in text and backend.name in text and "fc1" in text


# -- short training runs -----------------------------------------------------------------------------


def _blobs(n=200, seed=0):
    """Three well-separated 2-D Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    t = rng.integers(0, 3, size=n)
    x = centers[t] + 0.5 * rng.standard_normal((n, 2))
    return x.astype(np.float32), t


def _bars(n=120, seed=0):
    """8x8 images: class 0 a horizontal bar, class 1 a vertical bar, on noise."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, size=n)
    x = 0.3 * rng.standard_normal((n, 1, 8, 8))
    pos = rng.integers(1, 7, size=n)
    for i in range(n):
        if t[i] == 0:
            x[i, 0, pos[i], :] += 1.0
        else:
            x[i, 0, :, pos[i]] += 1.0
    return x.astype(np.float32), t


def _train(model, opt, x, t, steps=30):
    losses = []
    for _ in range(steps):
        losses.append(float(model.loss(x, t)))
        model.backward()
        opt.step(model.params, model.grads)
    return losses + [float(model.loss(x, t, train=False))]


@pytest.mark.parametrize("make_opt", [lambda: Adam(lr=0.05), lambda: Momentum(lr=0.1, momentum=0.9)],
                         ids=["adam", "momentum"])
def test_mlp_training_reduces_loss(backend, make_opt):
    x, t = _blobs()
    model = MLP(input_size=2, hidden_size_list=(16,), output_size=3, seed=0)
    losses = _train(model, make_opt(), x, t)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.accuracy(x, t) > 0.9


def test_simple_convnet_training_reduces_loss(backend):
    x, t = _bars()
    model = SimpleConvNet(input_dim=(1, 8, 8), filter_num=4, filter_size=3, pad=1, hidden_size=16, output_size=2,
                          weight_init_std=0.1, seed=0)
    losses = _train(model, Adam(lr=0.01), x, t)
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.accuracy(x, t) > 0.9


def test_current_backend_is_used_by_default(backend):
    assert backends.current() is backend
    assert all(backend.owns(p) for p in _small_mlp().params.values())

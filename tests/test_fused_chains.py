"""Fused layer chains (conv + ReLU, affine + ReLU + dropout) against the same layers run one by one, and
the buffers a training step reuses against the arrays its caller receives."""

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import backends
from xpnet.layers import Affine, Conv2D, Dropout, MaxPool2D, ReLU, Sequential
from xpnet.layers.fusion import AffineChain, ConvReLU, ConvReLUPool
from xpnet.models import DeepConvNet
from xpnet.training.batches import BatchIterator

CPU = backends.get("numpy")
N, C, H = 3, 2, 12  # conv rows N * H * H = 432: the bias-gradient reduction runs in two slices


def _net(be, dtype, ratio=0.4):
    rng = np.random.default_rng(0)
    kw = dict(rng=rng, dtype=dtype, backend=be)
    return Sequential(
        ("conv1", Conv2D(C, 4, 3, 1, 1, **kw)), ("relu1", ReLU()),
        ("conv2", Conv2D(4, 4, 3, 1, 1, **kw)), ("relu2", ReLU()), ("pool", MaxPool2D(2, 2)),
        ("fc1", Affine(4 * 6 * 6, 7, **kw)), ("relu3", ReLU()), ("drop1", Dropout(ratio, seed=3)),
        ("fc2", Affine(7, 5, **kw)), ("drop2", Dropout(ratio, seed=4)),
    )


def _run(be, net, x, dout, fused):
    """Output, input gradient and parameter gradients (NumPy copies) of one training pass."""
    layers = list(net.layers.values())
    x = be.asarray(x)
    if fused:
        y = net.forward(x, train=True)
    else:
        y = x
        for layer in layers:
            y = layer.forward(y, train=True)
    y = be.asnumpy(y).copy()
    d = be.asarray(dout)
    if fused:
        d = net.backward(d)
    else:
        for layer in reversed(layers):
            d = layer.backward(d)
    return y, be.asnumpy(d).copy(), {k: be.asnumpy(g).copy() for k, g in net.grads.items()}


def test_sequential_runs_the_chains_it_can_fuse():
    steps = DeepConvNet(backend="numpy").net.steps()
    kinds = [type(s).__name__ for s in steps]
    assert kinds == ["ConvReLU", "ConvReLUPool"] * 3 + ["AffineChain", "AffineChain"]
    assert steps[-2].relu is not None and steps[-1].relu is None
    assert all(s.dropout is not None for s in steps[-2:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_chains_equal_the_layers_one_by_one(backend, dtype):
    """Same forward values, input gradient and parameter gradients; the dropout masks are the same
    draws (the fused kernel and the Dropout layer read one counter-based stream on CUDA, the same
    generator on the CPU)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C, H, H)).astype(dtype)
    dout = rng.standard_normal((N, 5)).astype(dtype)
    fused = _run(backend, _net(backend, dtype), x, dout, fused=True)
    plain = _run(backend, _net(backend, dtype), x, dout, fused=False)
    assert np.count_nonzero(fused[0]) and np.count_nonzero(fused[1])
    # longest chains: dx through the two convs and fc1 (fc1's 144 terms); db sums over N * H * H rows
    terms = {"y": 144 + 36, "dx": 144 + 36 + 7, "W": N * H * H, "b": N * H * H}
    assert_close(fused[0], plain[0], terms=terms["y"], scale=np.abs(plain[0]).max(), err_msg="y")
    assert_close(fused[1], plain[1], terms=terms["dx"], scale=np.abs(plain[1]).max(), err_msg="dx")
    for name, g in plain[2].items():
        assert_close(fused[2][name], g, terms=terms[name[-1]], scale=np.abs(g).max(), err_msg=name)


def test_fused_chains_equal_the_numpy_backend(backend):
    """Against the CPU's layers one by one (no dropout: the two backends draw different masks)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    dout = rng.standard_normal((N, 5)).astype(np.float32)
    got = _run(backend, _net(backend, np.float32, ratio=0.0), x, dout, fused=True)
    want = _run(CPU, _net(CPU, np.float32, ratio=0.0), x, dout, fused=False)
    terms = {"y": 144 + 36, "dx": 144 + 36 + 7, "W": N * H * H, "b": N * H * H}
    assert_close(got[0], want[0], terms=terms["y"], scale=np.abs(want[0]).max(), err_msg="y")
    assert_close(got[1], want[1], terms=terms["dx"], scale=np.abs(want[1]).max(), err_msg="dx")
    for name, g in want[2].items():
        assert_close(got[2][name], g, terms=terms[name[-1]], scale=np.abs(g).max(), err_msg=name)


def test_fused_chains_on_the_cpu_are_the_same_operations():
    """The NumPy backend's fused path is the layers' own operations in the same order: equal bit for bit."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    dout = rng.standard_normal((N, 5)).astype(np.float32)
    fused = _run(CPU, _net(CPU, np.float32), x, dout, fused=True)
    plain = _run(CPU, _net(CPU, np.float32), x, dout, fused=False)
    np.testing.assert_array_equal(fused[0], plain[0])
    np.testing.assert_array_equal(fused[1], plain[1])
    for name, g in plain[2].items():
        np.testing.assert_array_equal(fused[2][name], g, err_msg=name)


@pytest.mark.parametrize("relu, ratio", [(False, 0.0), (True, 0.0), (True, 0.5), (False, 0.5)])
def test_affine_backward_reduces_many_rows_like_the_generic_one(backend, relu, ratio):
    """600 rows: the bias gradient is summed in three slices, the last one to finish adding them up."""
    rng = np.random.default_rng(3)
    x, W, b = (backend.asarray(rng.standard_normal(s).astype(np.float32)) for s in ((600, 9), (9, 70), (70,)))
    dout = backend.asarray(rng.standard_normal((600, 70)).astype(np.float32))
    y, cache = backend.affine_forward(x, W, b, relu, ratio, backend.rng(5))
    got = backend.affine_backward(dout, cache, x, W)
    # the generic path on the same output: its masks are y > 0 (ReLU) and y != 0 (dropout, almost surely)
    kept = backend.asnumpy(y) != 0 if ratio else np.ones((600, 70), bool)
    d = backend.asnumpy(dout) * kept * (1 / (1 - ratio) if ratio else 1)
    d = d * (backend.asnumpy(y) > 0) if relu else d
    xn, Wn = backend.asnumpy(x), backend.asnumpy(W)
    want = (d @ Wn.T, xn.T @ d, d.sum(axis=0))
    for name, g, w, terms in zip(("dx", "dW", "db"), got, want, (70, 600, 600)):
        assert_close(backend.asnumpy(g), w, terms=terms, scale=3.0, dtype=np.float32, err_msg=name)
    if relu or ratio:
        assert 0 < np.count_nonzero(d) < d.size


@pytest.mark.parametrize("window", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 1))],
                         ids=str)
def test_conv_relu_pool_in_one_step_equals_the_three_layers(backend, window):
    """Bias, ReLU and max pool in one kernel each way: the same numbers as the three layers' kernels
    (ties among ReLU's zeros, overlapping windows and padding included)."""
    (KH, KW), stride, pad = window
    rng = np.random.default_rng(8)
    x = rng.integers(-2, 3, (2, 3, 9, 8)).astype(np.float32)  # small integers: ties and exact zeros
    W, b = rng.integers(-1, 2, (4, 3, 3, 3)).astype(np.float32), np.array([0, -1, 1, 0], np.float32)
    pool = MaxPool2D((KH, KW), stride, pad)
    dout = rng.standard_normal(pool.output_shape((2, 4, 9, 8))).astype(np.float32)
    runs = []
    for fused in (True, False):
        net = Sequential(("conv", Conv2D(3, 4, 3, 1, 1, backend=backend)), ("relu", ReLU()),
                         ("pool", MaxPool2D((KH, KW), stride, pad)))
        net["conv"].params["W"][...], net["conv"].params["b"][...] = backend.asarray(W), backend.asarray(b)
        runs.append(_run(backend, net, x, dout, fused))
    assert [type(s) for s in net.steps()] == [ConvReLUPool]
    (y, dx, g), (y_, dx_, g_) = runs
    np.testing.assert_array_equal(y, y_)
    np.testing.assert_array_equal(dx, dx_)
    for name in g_:
        np.testing.assert_array_equal(g[name], g_[name], err_msg=name)


def test_returned_arrays_are_never_overwritten_by_the_next_step(backend):
    """Internal buffers are reused step to step; what a call returns is the caller's (unless it asked
    for reuse, as the Trainer does)."""
    rng = np.random.default_rng(4)
    net = _net(backend, np.float32)
    x1, x2 = (backend.asarray(rng.standard_normal((N, C, H, H)).astype(np.float32)) for _ in range(2))
    d1, d2 = (backend.asarray(rng.standard_normal((N, 5)).astype(np.float32)) for _ in range(2))
    y1 = net.forward(x1, train=True)
    dx1 = net.backward(d1)
    y1_, dx1_ = backend.asnumpy(y1).copy(), backend.asnumpy(dx1).copy()
    y2 = net.forward(x2, train=True)
    dx2 = net.backward(d2)
    np.testing.assert_array_equal(backend.asnumpy(y1), y1_)
    np.testing.assert_array_equal(backend.asnumpy(dx1), dx1_)
    assert not np.array_equal(backend.asnumpy(y2), y1_) and not np.array_equal(backend.asnumpy(dx2), dx1_)


def test_a_reusing_training_loop_gets_the_same_numbers(backend):
    """Batches and losses of a loop that opts in to buffer reuse equal those of one that does not."""
    rng = np.random.default_rng(6)
    x, t = rng.random((12, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 12)
    runs = []
    for reuse in (False, True):
        model = DeepConvNet(seed=0, backend=backend)
        seen = []
        for xb, tb in BatchIterator(x, t, batch_size=4, backend=backend, reuse_buffers=reuse).epoch():
            loss, y = model.forward_loss(xb, tb, train=True, reuse=reuse)
            step = [backend.asnumpy(xb).copy(), backend.asnumpy(tb).copy(), float(loss), backend.asnumpy(y).copy()]
            step += [backend.asnumpy(g).copy() for g in model.backward().values()]
            seen.append(step)
        runs.append(seen)
    for a, b in zip(*runs, strict=True):
        assert a[2] == b[2]
        for k, (u, v) in enumerate(zip(a, b, strict=True)):
            np.testing.assert_array_equal(u, v, err_msg=f"item {k}")


def test_steps_reuse_only_what_stays_inside_the_network():
    """The last step's output and the first step's input gradient reach the caller: never reused."""
    net = _net(CPU, np.float32)
    steps = net.steps()
    assert [type(s) for s in steps] == [ConvReLU, ConvReLUPool, AffineChain, AffineChain]
    heads = [net["conv1"], net["conv2"], net["fc1"], net["fc2"]]
    assert [h.reuse_output for h in heads] == [True, True, True, False]
    assert [h.reuse_input_grad for h in heads] == [False, True, True, True]
    shared = Sequential(("a", Affine(3, 3, backend="numpy")), ("r", ReLU()))
    shared.add("again", shared["a"])  # one layer twice: its second call would overwrite the first's output
    shared.steps()
    assert not shared["a"].reuse_output and not shared["a"].reuse_input_grad


def test_deepconvnet_training_step_equals_the_numpy_backend(backend):
    """The whole fused, buffer-reusing step (dropout off: the backends draw different masks), twice."""
    rng = np.random.default_rng(9)
    x, t = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)
    got, want = (DeepConvNet(seed=0, dropout_ratio=0.0, backend=be) for be in (backend, CPU))
    state = {k: rng.standard_normal(v.shape).astype(v.dtype) * 0.1 if k.endswith(".b") else v
             for k, v in want.state_dict().items()}  # biases not zero, so a bias misread shows
    got.load_state_dict(state)
    want.load_state_dict(state)
    for _ in range(2):
        losses = [float(m.forward_loss(be.asarray(x), be.asarray(t), train=True, reuse=True)[0])
                  for m, be in ((got, backend), (want, CPU))]
        grads = [{k: be.asnumpy(g).copy() for k, g in m.backward().items()} for m, be in ((got, backend), (want, CPU))]
        # the longest chain: the six convolutions' and fc1's dot products (<= 1024 terms each), then a
        # bias gradient over up to 8 * 28 * 28 rows
        assert_close(losses[0], losses[1], terms=1024 + 8 * 28 * 28, scale=losses[1], dtype=np.float32)
        for k, g in grads[1].items():
            assert_close(grads[0][k], g, terms=1024 * 6 + 8 * 28 * 28, scale=np.abs(g).max(), err_msg=k)
        x = x[::-1].copy()

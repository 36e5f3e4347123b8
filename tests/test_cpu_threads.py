"""The NumPy backend's batch split over threads: same results as one slice, BLAS threads restored."""

import numpy as np
import pytest

from xpnet.backends import numpy_conv, numpy_conv_probe, numpy_split
from xpnet.backends.cpu_threads import BatchSplitter


@pytest.fixture
def split(monkeypatch):
    monkeypatch.setattr(numpy_split, "MIN_SLICE", 1)  # split even these small test arrays
    s = BatchSplitter(threads=3)
    if s.threads == 1:
        pytest.skip("NumPy's BLAS is not an OpenBLAS whose thread count can be set: the split is off")
    return s


def test_slices_cover_the_batch_in_order(split):
    assert split.slices(10) == [(0, 3), (3, 6), (6, 10)]
    assert split.slices(2) == [(0, 1), (1, 2)]
    assert split.slices(1) == [(0, 1)]
    assert split.slices(10, min_per_thread=4) == [(0, 5), (5, 10)]
    assert split.run(lambda k, a, b: (k, a, b), 7) == [(0, 0, 2), (1, 2, 4), (2, 4, 7)]


def test_blas_threads_are_restored_and_nested_use_runs_in_place(split):
    set_threads, get_threads = split.blas
    before = get_threads()
    seen = split.run(lambda k, a, b: (get_threads(), split.run(lambda *_: get_threads(), 4)), 6)
    assert [s[0] for s in seen] == [1, 1, 1]  # one BLAS thread inside the region
    assert all(len(inner) == 3 for _, inner in seen)  # the nested call ran its slices in place
    assert get_threads() == before
    with pytest.raises(ZeroDivisionError):
        split.run(lambda k, a, b: 1 / 0, 6)
    assert get_threads() == before  # restored after an error too


def test_bad_thread_setting_is_named(monkeypatch):
    monkeypatch.setenv("XPNET_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="XPNET_NUM_THREADS must be a positive integer, got 'two'"):
        BatchSplitter()


@pytest.mark.parametrize("C, FN, pad, stride", [(1, 4, (1, 1), (1, 1)), (6, 4, (2, 1), (1, 1)), (6, 8, (1, 1), (1, 1)),
                                                (6, 4, (1, 2), (2, 1))])
def test_reused_conv_buffers_give_what_fresh_ones_give(C, FN, pad, stride):
    # Column buffers are created zeroed and their padding entries are never written again: a second
    # input through the same workspace must give exactly what fresh (zeroed) buffers give.
    rng = np.random.default_rng(4)
    W = rng.standard_normal((FN, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(FN).astype(np.float32)
    ws = {}
    for _ in range(2):
        x = rng.standard_normal((5, C, 7, 6)).astype(np.float32)
        got, cache = numpy_conv.forward(x, W, b, stride, pad, ws)
        want, fresh_cache = numpy_conv.forward(x, W, b, stride, pad, None)
        np.testing.assert_array_equal(got, want)
        dout = rng.standard_normal(got.shape).astype(np.float32)
        for g, w in zip(numpy_conv.backward(dout, cache, W, stride, pad, ws),
                        numpy_conv.backward(dout, fresh_cache, W, stride, pad, None)):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("C, FN, pad", [(1, 4, (1, 1)), (6, 4, (2, 1)), (6, 8, (0, 1))])
def test_inference_forward_in_runs_matches_and_backward_rebuilds_the_columns(split, C, FN, pad, monkeypatch):
    monkeypatch.setattr(numpy_conv, "CHUNK_BYTES", 2000)  # runs of one or two images per thread
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, C, 6, 5)).astype(np.float32)
    W, b = rng.standard_normal((FN, C, 3, 3)).astype(np.float32), rng.standard_normal(FN).astype(np.float32)
    kept, cache = numpy_conv.forward(x, W, b, (1, 1), pad, {}, split)
    ws = {}
    runs, lean = numpy_conv.forward(x, W, b, (1, 1), pad, ws, split, keep=False)
    assert lean[1] is None and any(key[0] == "run" for key in ws)  # no batch-sized columns were kept
    # the two GEMM layouts sum the C*3*3 products in different orders: terms x eps x scale apart
    tol = C * 9 * np.finfo(np.float32).eps * np.abs(x).max() * np.abs(W).max()
    np.testing.assert_allclose(runs, kept, rtol=0, atol=tol)
    dout = rng.standard_normal(kept.shape).astype(np.float32)
    for got, want in zip(numpy_conv.backward(dout, lean, W, (1, 1), pad, ws, split),
                         numpy_conv.backward(dout, cache, W, (1, 1), pad, {}, split)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("C, pad, stride", [(1, (1, 1), (1, 1)), (16, (1, 1), (1, 1)), (8, (2, 1), (2, 1))])
def test_split_convolution_matches_one_slice(split, C, pad, stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, C, 9, 10)).astype(np.float32)
    W = rng.standard_normal((5, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    one, cache1 = numpy_conv.forward(x, W, b, stride, pad, {})
    many, cache2 = numpy_conv.forward(x, W, b, stride, pad, {}, split)
    np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-5)
    dout = rng.standard_normal(one.shape).astype(np.float32)
    for got, want in zip(numpy_conv.backward(dout, cache2, W, stride, pad, {}, split),
                         numpy_conv.backward(dout, cache1, W, stride, pad, {})):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("K, stride, pad", [(2, (2, 2), (0, 0)), (3, (2, 2), (1, 1)), (3, (1, 1), (0, 0))])
def test_split_pooling_is_exact_and_keeps_the_memory_order(split, K, stride, pad):
    from xpnet.backends import pooling

    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, (6, 5, 8, 9)).astype(np.float32).transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
    OH, OW = (8 + 2 * pad[0] - K) // stride[0] + 1, (9 + 2 * pad[1] - K) // stride[1] + 1
    want, cache = pooling.max_forward(np, x, K, K, stride, pad, OH, OW)  # ties galore: first maximum wins
    got, cache_split = numpy_split.max_forward(split, x, K, K, stride, pad, OH, OW)
    np.testing.assert_array_equal(got, want)
    assert got.strides[1] > got.strides[0]  # channel-major like its input
    dout = rng.standard_normal(want.shape).astype(np.float32)
    dx = numpy_split.max_backward(split, dout, cache_split, x.shape, K, K, stride, pad)
    np.testing.assert_array_equal(dx, pooling.max_backward(np, dout, cache, x.shape, K, K, stride, pad))
    np.testing.assert_array_equal(numpy_split.avg_forward(split, x, K, K, stride, pad, OH, OW),
                                  pooling.avg_forward(np, x, K, K, stride, pad, OH, OW))
    np.testing.assert_array_equal(numpy_split.avg_backward(split, dout, x.shape, K, K, stride, pad),
                                  pooling.avg_backward(np, dout, x.shape, K, K, stride, pad))


def test_split_relu_matches_and_keeps_the_memory_order(split):
    x = np.random.default_rng(2).standard_normal((5, 4, 3, 6)).astype(np.float32)
    y, mask = numpy_split.relu_forward(split, x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(mask, x > 0)
    dout = np.ones_like(x)
    np.testing.assert_array_equal(numpy_split.relu_backward(split, dout, mask), dout * (x > 0))
    xt = x.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
    assert numpy_split.relu_forward(split, xt)[0].strides[1] > numpy_split.relu_forward(split, xt)[0].strides[0]


@pytest.mark.parametrize("M, K, N", [(7, 5, 3), (3, 5, 8), (1, 4, 1)])
def test_split_matmul_matches(split, monkeypatch, M, K, N):
    monkeypatch.setattr(numpy_split, "MIN_MATMUL", 1)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    got = numpy_split.matmul(split, a, b)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a @ b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(numpy_split.matmul(split, b.T, a.T), b.T @ a.T, rtol=1e-6, atol=1e-6)  # views


@pytest.mark.parametrize("C, FN", [(1, 4), (16, 4), (16, 32)])  # per-image GEMMs; dx by full conv; by col2im
def test_gemm_probe_runs_the_products_the_convolution_runs(C, FN, monkeypatch):
    calls, real = [], np.matmul
    monkeypatch.setattr(numpy_conv, "CHUNK_BYTES", 30000)  # runs of two images where the code makes runs
    monkeypatch.setattr(np, "matmul", lambda a, b, **kw: calls.append((a.shape, b.shape)) or real(a, b, **kw))
    split = BatchSplitter(threads=2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, C, 5, 5)).astype(np.float32)
    W, b = rng.standard_normal((FN, C, 3, 3)).astype(np.float32), np.zeros(FN, np.float32)
    out, cache = numpy_conv.forward(x, W, b, (1, 1), (1, 1), {}, split)
    numpy_conv.backward(out, cache, W, (1, 1), (1, 1), {}, split)
    conv_calls = sorted(calls)
    calls.clear()
    fwd, bwd = numpy_conv_probe.gemm_probe(x.shape, W.shape, (1, 1), (1, 1), split)
    fwd()
    bwd()
    assert sorted(calls) == conv_calls and len(conv_calls) >= 2 * len(split.slices(6))

"""The NumPy backend's batch split over threads: same results as one slice, one BLAS thread per slice.

Split and unsplit runs of one product may take different BLAS blockings: they agree to the rounding
:mod:`tolerance` derives (terms = the products' inner dimension), not bit for bit.
"""

import threading

import numpy as np
import pytest
from tolerance import assert_close

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


def test_splitter_sets_blas_to_one_thread_and_nested_use_runs_in_place(split):
    # The contract cpu_threads documents: a splitter of more than one thread sets OpenBLAS to one thread
    # for the whole process (its spinning workers would take the slices' cores) and leaves it there.
    set_threads, get_threads = split.blas
    set_threads(2)  # as OPENBLAS_NUM_THREADS=2 would
    splitter = BatchSplitter(threads=3)
    assert get_threads() == 1
    assert BatchSplitter(threads=1).threads == 1 and get_threads() == 1  # the split off: BLAS left alone

    together = threading.Barrier(3, timeout=30)  # broken unless the three slices run at the same time

    def outer(k, a, b):
        together.wait()
        me = threading.get_ident()
        return me, splitter.run(lambda *_: threading.get_ident() == me, 4)

    seen = splitter.run(outer, 6)
    assert len({ident for ident, _ in seen}) == 3  # three slices on three threads
    assert all(inner == [True] * 3 for _, inner in seen)  # a nested call runs its slices in place
    with pytest.raises(ZeroDivisionError):
        splitter.run(lambda k, a, b: 1 / 0, 6)
    together.reset()
    assert len(splitter.run(lambda k, a, b: (together.wait(), k), 6)) == 3  # still splits after the error


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
    assert_close(runs, kept, terms=C * 9 + 1)  # the two GEMM layouts sum the C*3*3 products in other orders
    dout = rng.standard_normal(kept.shape).astype(np.float32)
    got = numpy_conv.backward(dout, lean, W, (1, 1), pad, ws, split)
    want = numpy_conv.backward(dout, cache, W, (1, 1), pad, {}, split)
    for name, g, w, terms in zip(("dx", "dW", "db"), got, want, _grad_terms(x.shape, W.shape, dout.shape)):
        assert_close(g, w, terms=terms, err_msg=name)


def _grad_terms(x_shape, W_shape, out_shape):
    """Inner dimensions of conv's dx, dW and db products: FN*KH*KW (a tap sum), N*OH*OW, N*OH*OW."""
    FN, _, KH, KW = W_shape
    N, _, OH, OW = out_shape
    return FN * KH * KW, N * OH * OW, N * OH * OW


@pytest.mark.parametrize("C, pad, stride", [(1, (1, 1), (1, 1)), (16, (1, 1), (1, 1)), (8, (2, 1), (2, 1))])
def test_split_convolution_matches_one_slice(split, C, pad, stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, C, 9, 10)).astype(np.float32)
    W = rng.standard_normal((5, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    one, cache1 = numpy_conv.forward(x, W, b, stride, pad, {})
    many, cache2 = numpy_conv.forward(x, W, b, stride, pad, {}, split)
    assert_close(many, one, terms=C * 9 + 1)
    dout = rng.standard_normal(one.shape).astype(np.float32)
    got = numpy_conv.backward(dout, cache2, W, stride, pad, {}, split)
    want = numpy_conv.backward(dout, cache1, W, stride, pad, {})
    for name, g, w, terms in zip(("dx", "dW", "db"), got, want, _grad_terms(x.shape, W.shape, dout.shape)):
        assert g.dtype == np.float32
        assert_close(g, w, terms=terms, err_msg=name)


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
    assert_close(got, a @ b, terms=K)
    assert_close(numpy_split.matmul(split, b.T, a.T), b.T @ a.T, terms=K)  # views


class _Counted(np.ndarray):
    """An array whose matrix products are recorded: ``np.matmul(a, b)`` and ``a @ b`` both reach the
    matmul ufunc, and through it this hook, when either operand is one of these."""

    calls = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        plain = [a.view(np.ndarray) if isinstance(a, _Counted) else a for a in inputs]
        if "out" in kw:
            kw["out"] = tuple(o.view(np.ndarray) if isinstance(o, _Counted) else o for o in kw["out"])
        if ufunc is np.matmul and method == "__call__":
            _Counted.calls.append((plain[0].shape, plain[1].shape))
        return getattr(ufunc, method)(*plain, **kw)


@pytest.mark.parametrize("C, FN", [(1, 4), (16, 4), (16, 32)])  # per-image GEMMs; dx by full conv; by col2im
def test_gemm_probe_runs_the_products_the_convolution_runs(C, FN, monkeypatch):
    monkeypatch.setattr(numpy_conv, "CHUNK_BYTES", 30000)  # runs of two images where the code makes runs
    split = BatchSplitter(threads=2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, C, 5, 5)).astype(np.float32).view(_Counted)
    W, b = rng.standard_normal((FN, C, 3, 3)).astype(np.float32).view(_Counted), np.zeros(FN, np.float32)
    monkeypatch.setattr(_Counted, "calls", [])
    out, cache = numpy_conv.forward(x, W, b, (1, 1), (1, 1), {}, split)
    numpy_conv.backward(np.asarray(out).view(_Counted), cache, W, (1, 1), (1, 1), {}, split)
    conv_calls = sorted(_Counted.calls)
    _Counted.calls.clear()
    real_rng = np.random.default_rng  # the probe's random operands count their products too
    monkeypatch.setattr(np.random, "default_rng", lambda seed: _CountedRng(real_rng(seed)))
    fwd, bwd = numpy_conv_probe.gemm_probe(x.shape, W.shape, (1, 1), (1, 1), split)
    fwd()
    bwd()
    assert sorted(_Counted.calls) == conv_calls and len(conv_calls) >= 2 * len(split.slices(6))


class _CountedRng:
    def __init__(self, rng):
        self.rng = rng

    def random(self, *args, **kw):
        return self.rng.random(*args, **kw).view(_Counted)

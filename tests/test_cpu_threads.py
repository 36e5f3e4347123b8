"""The NumPy backend's batch split over threads: same results as one slice, one BLAS thread per slice.

Split and unsplit runs of one product may take different BLAS blockings: they agree to the rounding
:mod:`tolerance` derives (terms = the products' inner dimension), not bit for bit.
"""

import os
import threading
import time

import numpy as np
import pytest
from tolerance import assert_close

from xpnet.backends import numpy_conv, numpy_conv_plan, numpy_split, stage_clock
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
    from xpnet.backends.cpu_threads import blas_threads

    before = blas_threads()
    seen = split.run(lambda k, a, b: (blas_threads(), split.run(lambda *_: blas_threads(), 4)), 6)
    assert [s[0] for s in seen] == [1, 1, 1]  # one BLAS thread inside the region
    assert all(len(inner) == 3 for _, inner in seen)  # the nested call ran its slices in place
    assert blas_threads() == before
    with pytest.raises(ZeroDivisionError):
        split.run(lambda k, a, b: 1 / 0, 6)
    assert blas_threads() == before  # restored after an error too


def test_slices_run_at_the_same_time_and_the_split_goes_on_after_an_error(split):
    together = threading.Barrier(3, timeout=30)  # broken unless the three slices run at the same time

    def outer(k, a, b):
        together.wait()
        me = threading.get_ident()
        return me, split.run(lambda *_: threading.get_ident() == me, 4)

    seen = split.run(outer, 6)
    assert len({ident for ident, _ in seen}) == 3  # three slices on three threads
    assert all(inner == [True] * 3 for _, inner in seen)  # a nested call runs its slices in place
    with pytest.raises(ZeroDivisionError):
        split.run(lambda k, a, b: 1 / 0, 6)
    with pytest.raises(ZeroDivisionError):
        split.run(lambda k, a, b: 1 / (k - 2), 6)  # only the last slice, on a worker, fails
    together.reset()
    assert len(split.run(lambda k, a, b: (together.wait(), k), 6)) == 3  # still splits after the error
    assert split.run(lambda k, a, b: (k, a, b), 6) == [(0, 0, 2), (1, 2, 4), (2, 4, 6)]  # results in order


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_workers_of_its_own(split):
    assert len(split.run(lambda k, a, b: k, 6)) == 3  # the parent's workers exist now
    pid = os.fork()
    if pid == 0:  # the child: the parent's worker threads are not here; a split must not wait for them
        ok = split.run(lambda k, a, b: (k, a, b), 6) == [(0, 0, 2), (1, 2, 4), (2, 4, 6)]
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("a split in a forked child hung waiting for the parent's workers")


_STEP = """
import numpy as np
from threadpoolctl import threadpool_info
def counts():
    return [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
before = counts()
import xpnet
from xpnet import backends
from xpnet.models import DeepConvNet
from xpnet.optim import Adam
assert backends.get("numpy").splitter.threads == 2, backends.get("numpy").splitter
model = DeepConvNet(input_dim=(1, 12, 12), dtype="float32", backend="numpy")
x, t = np.random.default_rng(0).random((8, 1, 12, 12), dtype=np.float32), np.arange(8) % 10
model.loss(x, t, train=True)
model.backward()
Adam().step(model.params, model.grads)
after = counts()
assert before and after == before, (before, after)
"""


def test_numpys_blas_threads_are_what_they_were_after_import_and_a_training_step():

    import subprocess
    import sys

    if BatchSplitter(threads=2).threads == 1:
        pytest.skip("no BLAS whose thread count threadpoolctl can set: the split is off")
    env = {**os.environ, "XPNET_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", _STEP], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_bad_thread_setting_is_named(monkeypatch):
    monkeypatch.setenv("XPNET_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="XPNET_NUM_THREADS must be a positive integer, got 'two'"):
        BatchSplitter()


def _conv(x, W, b, stride, pad, ws=None, split=None, keep=True):
    """The NumPy convolution's forward through the plan kept in ``ws`` (a fresh one when None)."""
    return numpy_conv_plan.plan_for(ws, x, W, stride, pad, split, algorithm="im2col").forward(x, W, b, keep)


def _conv_backward(dout, cache, W):
    return cache.plan.backward(dout, cache, W)


@pytest.mark.parametrize("C, FN, pad, stride", [(1, 4, (1, 1), (1, 1)), (6, 4, (2, 1), (1, 1)), (6, 8, (1, 1), (1, 1)),
                                                (6, 4, (1, 2), (2, 1))])
def test_reused_conv_buffers_give_what_fresh_ones_give(C, FN, pad, stride):
    # Column buffers are created zeroed and their padding entries are never written again: a second
    # input through the same plan must give exactly what a fresh plan (zeroed buffers) gives.
    rng = np.random.default_rng(4)
    W = rng.standard_normal((FN, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(FN).astype(np.float32)
    ws = {}
    for _ in range(2):
        x = rng.standard_normal((5, C, 7, 6)).astype(np.float32)
        got, cache = _conv(x, W, b, stride, pad, ws)
        want, fresh_cache = _conv(x, W, b, stride, pad, None)
        assert cache.plan is ws["plans"][next(iter(ws["plans"]))]  # the same plan both times
        np.testing.assert_array_equal(got, want)
        dout = rng.standard_normal(got.shape).astype(np.float32)
        for g, w in zip(_conv_backward(dout, cache, W), _conv_backward(dout, fresh_cache, W)):
            np.testing.assert_array_equal(g, w)


def test_a_workspace_keeps_a_few_plans_and_drops_the_least_recently_used():
    W, ws = np.ones((2, 1, 3, 3), np.float32), {}
    xs = [np.ones((n, 1, 5, 5), np.float32) for n in range(1, numpy_conv_plan.MAX_PLANS + 2)]
    first = _conv(xs[0], W, None, (1, 1), (1, 1), ws)[1].plan
    for x in xs[1:-1]:
        _conv(x, W, None, (1, 1), (1, 1), ws)
    assert _conv(xs[0], W, None, (1, 1), (1, 1), ws)[1].plan is first  # reused, and now the most recent
    _conv(xs[-1], W, None, (1, 1), (1, 1), ws)
    kept = {key[0].N for key in ws["plans"]}
    assert len(kept) == numpy_conv_plan.MAX_PLANS and 1 in kept and 2 not in kept


@pytest.mark.parametrize("C, FN, pad", [(1, 4, (1, 1)), (6, 4, (2, 1)), (6, 8, (0, 1))])
def test_inference_forward_in_runs_matches_and_backward_rebuilds_the_columns(split, C, FN, pad, monkeypatch):
    monkeypatch.setattr(numpy_conv, "CHUNK_BYTES", 2000)  # runs of one or two images per thread
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, C, 6, 5)).astype(np.float32)
    W, b = rng.standard_normal((FN, C, 3, 3)).astype(np.float32), rng.standard_normal(FN).astype(np.float32)
    kept, cache = _conv(x, W, b, (1, 1), pad, {}, split)
    runs, lean = _conv(x, W, b, (1, 1), pad, {}, split, keep=False)
    assert lean.col is None and lean.plan._col is None  # no batch-sized columns were made
    assert any(key[0] == "col" and key[2] < 7 for key in lean.plan._scratch)  # runs of fewer images
    assert_close(runs, kept, terms=C * 9 + 1)  # the two GEMM layouts sum the C*3*3 products in other orders
    dout = rng.standard_normal(kept.shape).astype(np.float32)
    got, want = _conv_backward(dout, lean, W), _conv_backward(dout, cache, W)
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
    one, cache1 = _conv(x, W, b, stride, pad, {})
    many, cache2 = _conv(x, W, b, stride, pad, {}, split)
    assert_close(many, one, terms=C * 9 + 1)
    dout = rng.standard_normal(one.shape).astype(np.float32)
    got, want = _conv_backward(dout, cache2, W), _conv_backward(dout, cache1, W)
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


@pytest.mark.parametrize("C, FN, stages", [
    (1, 4, {"im2col", "gemm", "gemm dW", "gemm dx", "col2im"}),  # per-image GEMMs
    (16, 4, {"im2col", "gemm", "gemm dW", "dx: im2col", "dx: gemm"}),  # dx by the full convolution
    (16, 32, {"im2col", "gemm", "gemm dW", "gemm dx", "col2im"})])  # dx by col2im
def test_stage_times_put_every_matrix_product_in_a_gemm_stage(C, FN, stages, monkeypatch):
    # A fake clock that advances 1 ms per np.matmul call and not otherwise: each stage's recorded time is
    # then the number of products it ran, so the copies' stages must read 0 and the GEMM stages one each.
    now, real = [0.0], np.matmul
    monkeypatch.setattr(stage_clock, "time", type("Clock", (), {"perf_counter": lambda: now[0] / 1e3}))
    monkeypatch.setattr(np, "matmul", lambda *a, **kw: now.__setitem__(0, now[0] + 1) or real(*a, **kw))
    clock = numpy_conv_plan.StageClock()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, C, 5, 5)).astype(np.float32)
    W, b = rng.standard_normal((FN, C, 3, 3)).astype(np.float32), np.zeros(FN, np.float32)
    plan = numpy_conv_plan.ConvPlan(numpy_conv_plan.Geometry(6, C, 5, 5, FN, 3, 3, (1, 1), (1, 1)), np.float32,
                                    clock=clock)
    with clock.recording() as ms:
        out, cache = plan.forward(x, W, b)
        plan.backward(out, cache, W)
    assert ms == {name: (1.0 if "gemm" in name else 0.0) for name in stages}
    assert plan.forward(x, W, b)[0] is not None and clock._times is None  # recording ended with the block

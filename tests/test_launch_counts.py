"""Launches, allocations and host syncs per training step are counted, per phase, from what really runs."""

import json

import numpy as np
import pytest
from emulated_cupy import counters, device
from emulated_cupy.kernels import host_compiler_problem

from benchmarks import launches
from xpnet import optim
from xpnet.backends import cuda_graph_counts
from xpnet.models import DeepConvNet
from xpnet.training.batches import BatchIterator

pytestmark = pytest.mark.skipif(bool(host_compiler_problem()), reason="the emulated device needs g++ here")

def test_counting_sees_one_launch_per_kernel_call():
    with device.as_cuda() as be:
        x = be.xp.zeros((2, 1, 5, 5), dtype=np.float32)
        with counters.counting() as c:
            for _ in range(3):
                be.im2col(x, 3, 3)  # contiguous input: the kernel is the only launch
    assert (c.launches, c.allocations, c.syncs) == (3, 3, 0)
    assert c.kernels == {"xpnet_im2col": 3}


def test_step_counts_follow_the_code_that_runs(monkeypatch, tmp_path):
    base = launches.step_counts(batch_size=4)
    assert base["step"]["launches"] == sum(base[p]["launches"] for p in launches.PHASES)
    assert all(base[p]["launches"] > 0 for p in launches.PHASES)

    adam_step = optim.Adam.step

    def one_more_kernel(self, params, grads):
        adam_step(self, params, grads)
        next(iter(params.values())) * 1  # one elementwise kernel, one new array

    monkeypatch.setattr(optim.Adam, "step", one_more_kernel)
    more = launches.step_counts(batch_size=4)
    assert more["optimizer"]["launches"] == base["optimizer"]["launches"] + 1
    assert more["optimizer"]["allocations"] == base["optimizer"]["allocations"] + 1
    assert more["optimizer"]["kernels"]["multiply"] == base["optimizer"]["kernels"].get("multiply", 0) + 1
    assert more["forward+loss"] == base["forward+loss"] and more["backward"] == base["backward"]

    monkeypatch.setattr(optim.Adam, "step", adam_step)
    assert launches.main(["--batch-size", "4", "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["counts"] == base


def test_fused_step_one_optimizer_launch_no_host_sync():
    """The flat optimizer is one kernel over the one parameter buffer (after Adam's one-thread kernel for the
    step's bias corrections), with nothing allocated; a step never
    waits for the device; each conv + ReLU + max pool is one kernel each way after its GEMMs, the loss one
    forward and one back."""
    counts = launches.step_counts(batch_size=4)
    assert counts["optimizer"]["kernels"] == {"xpnet_adam_scalars": 1, "xpnet_fused_adam": 1}
    assert counts["optimizer"]["allocations"] == 0
    assert counts["step"]["syncs"] == 0
    assert counts["forward+loss"]["kernels"]["xpnet_bias_relu_pool"] == 3  # DeepConvNet's three pools
    assert counts["backward"]["kernels"]["xpnet_pool_act_grad"] == 3
    assert counts["forward+loss"]["kernels"]["xpnet_softmax_xent_forward"] == 1
    assert counts["backward"]["kernels"]["xpnet_softmax_xent_backward"] == 1


def _recorded_steps(make_optimizer, steps=3, batch_size=4):
    """Each training step's launches as ``(kernel, arguments)`` (:func:`counters.recording`) and its counts,
    for the benchmark's DeepConvNet step (batch, forward + loss with dropout, backward, optimizer)."""
    rng = np.random.default_rng(0)
    x = rng.random((batch_size * (steps + 1), 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, len(x))
    recorded = []
    with device.as_cuda() as be:
        model, opt = DeepConvNet(seed=0, backend=be), make_optimizer()
        batches = BatchIterator(x, t, batch_size=batch_size, backend=be, reuse_buffers=True).epoch()
        for _ in range(steps):
            with counters.recording() as calls, counters.counting() as counts:
                xb, tb = next(batches)
                model.forward_loss(xb, tb, train=True, reuse=True)
                model.backward()
                opt.step(model.trainable_params, model.grads)
            recorded.append((calls, counts))
    return recorded


@pytest.mark.parametrize("make_optimizer, h2d", [
    (lambda: optim.Adam(lr=0.001), 0),
    # the schedule changes the learning rate every step: the host writes it into the device's scalars
    (lambda: optim.AdamW(lr=0.001, schedule=optim.Cosine(10)), 1),
    (lambda: optim.Momentum(lr=0.01, schedule=optim.StepDecay(1, 0.5)), 1),
], ids=["adam", "adamw+cosine", "momentum+step-decay"])
def test_a_steady_step_launches_the_same_kernels_with_the_same_arguments(make_optimizer, h2d):
    """Steps 2 and 3 launch the same kernels on the same buffers with the same scalar arguments: the
    learning rate, Adam's bias corrections, the dropout offsets and the batch position are read from the
    device (so a step could be captured once as a CUDA graph and replayed)."""
    (_, _), (second, counts2), (third, counts3) = _recorded_steps(make_optimizer)
    assert len(second) == counts2.launches > 40 and counts2.allocations == counts2.syncs == 0
    changed = [(k, a[0]) for k, (a, b) in enumerate(zip(second, third, strict=True)) if a != b]
    assert not changed, changed
    assert counts2.h2d == counts3.h2d == h2d


@pytest.fixture(scope="module")
def batch_100():
    return launches.step_counts(batch_size=100)


def test_deepconvnet_step_at_batch_100_fits_the_budget(batch_100):
    """The issue's budget: at most 60 launches, no host sync and, after the first step, no allocation."""
    step = batch_100["step"]
    assert step["launches"] <= 60, batch_100
    assert step["allocations"] == 0 and step["syncs"] == 0 and step["h2d"] == 0, step


def test_each_layer_chain_runs_its_fused_kernels(batch_100):
    """What runs, kernel by kernel: three conv + ReLU chains (im2col, GEMM, bias + ReLU), three conv + ReLU +
    pool chains (im2col, GEMM, bias + ReLU + pool), two affine chains (GEMM, the dropout's one-thread
    reservation of its numbers, bias + ReLU + dropout), the loss in one kernel; backward one mask (and
    pool) + bias-gradient kernel per chain, two GEMMs per chain (one for conv1, whose input gradient nobody
    needs), col2im for five convs; the batch one gather after the one-thread reservation of its rows."""
    assert batch_100["batch"]["kernels"] == {"xpnet_batch_gather": 1, "xpnet_reserve": 1}
    assert batch_100["forward+loss"]["kernels"] == {
        "matmul": 8, "xpnet_im2col": 6, "xpnet_bias_act": 5, "xpnet_bias_relu_pool": 3,
        "xpnet_softmax_xent_forward": 1, "xpnet_reserve": 2}
    assert batch_100["backward"]["kernels"] == {
        "matmul": 15, "xpnet_act_grad": 5, "xpnet_col2im": 5, "xpnet_pool_act_grad": 3,
        "xpnet_softmax_xent_backward": 1}


def test_graph_node_tally_counts_the_work_the_device_runs():
    launched, by_type = cuda_graph_counts.tally(["kernel", "memset", "kernel", "empty", "memcpy", "event_record"])
    assert launched == 4 and by_type == {"kernel": 2, "memset": 1, "empty": 1, "memcpy": 1, "event_record": 1}


@pytest.mark.gpu
def test_a_gpu_counts_the_same_budget_by_graph_capture(real_gpu):
    """On a real GPU the step is captured into a CUDA graph: a sync would fail the capture, an allocation
    shows as a memory-pool request; cuBLAS may run a GEMM as more than one kernel."""
    emulated = launches.step_counts(batch_size=4)
    counted = launches.gpu_step_counts(real_gpu, batch_size=4)
    assert counted["step"]["allocations"] == 0 and counted["step"]["syncs"] == 0, counted
    assert counted["step"]["launches"] >= emulated["step"]["launches"], counted
    assert counted["optimizer"]["launches"] == 2 and counted["batch"]["launches"] == 2, counted

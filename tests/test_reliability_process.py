"""Reliability: Ctrl-C, kill -9, out of memory, backends and internal errors; crash, resume, reproduce.

Runs the real ``python -m xpnet`` in subprocesses where a signal must hit a live training run. GPU
tolerance: two CUDA runs with one seed agree to the rounding of their gradient sums (tests/tolerance.py; on
the CPU they are bit-identical).
"""

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from reliability_helpers import (
    assert_one_line_error,
    assert_same_arrays,
    model_arrays,
    popen_cli,
    run_main,
    tiny_idx,
    train_args,
)
from test_training import synthetic_digits
from tolerance import assert_close

from xpnet import backends, optim
from xpnet.errors import TrainingError, TrainingInterrupted
from xpnet.models import MLP, DeepConvNet, Model
from xpnet.training import Trainer, load_checkpoint

# -- helpers --------------------------------------------------------------------------------------------
FOREVER = 100_000  # epochs: the run goes on until a signal stops it


def _wait_for(path, proc, timeout=120.0):
    """Poll (bounded) until ``path`` exists; fail with the child's output if it died or took too long."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training exited early ({proc.returncode}): {out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"no {path} after {timeout} s")
        time.sleep(0.02)


def _interrupt_on_step(monkeypatch, n, exc=KeyboardInterrupt):
    """Raise ``exc`` from the ``n``-th training-mode loss (as a Ctrl-C would, mid-epoch)."""
    calls, real = [], Model.forward_loss

    def forward_loss(self, x, t, train=True, **kw):
        if train:
            calls.append(1)
            if len(calls) == n:
                raise exc()
        return real(self, x, t, train, **kw)

    monkeypatch.setattr(Model, "forward_loss", forward_loss)


# -- Ctrl-C ---------------------------------------------------------------------------------------------
def test_sigint_to_the_real_command_exits_130_with_a_resume_line(tmp_path, capsys):
    data, run = tiny_idx(tmp_path / "data"), tmp_path / "run"
    proc = popen_cli(*train_args(data, run, epochs=FOREVER))
    _wait_for(run / "curves.png", proc)  # the first epoch and its files are written
    time.sleep(0.2)  # somewhere in a later epoch: training, evaluating or writing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    m = re.fullmatch(r"xpnet: interrupted at epoch (\d+) step (\d+); resume with: (.*)", err.strip())
    assert m, err
    epoch, step, command = int(m[1]), int(m[2]), shlex.split(m[3])
    assert command[:2] == ["xpnet", "train"] and command[-1] == "--resume" and str(run) in command
    saved = load_checkpoint(run / "checkpoint.npz")[2]["epoch"]  # intact and loadable
    assert saved in (epoch - 1, epoch) and step >= 3 * (epoch - 1)  # 3 steps an epoch
    command[command.index("--epochs") + 1] = str(saved + 1)  # the same command, just shorter
    code, out, err = run_main(capsys, *command[1:])
    assert code == 0 and f"at epoch {saved}" in out, err


def test_ctrl_c_mid_epoch_keeps_the_last_epoch_and_names_the_exact_resume_command(tmp_path, capsys, monkeypatch):
    data, run = tiny_idx(tmp_path / "data"), tmp_path / "run"
    args = train_args(data, run, epochs=3)
    _interrupt_on_step(monkeypatch, 5)  # the 2nd step of epoch 2: 4 steps done
    code, _, err = run_main(capsys, *args)
    assert code == 130
    assert err == f"xpnet: interrupted at epoch 2 step 4; resume with: {shlex.join(['xpnet', *args, '--resume'])}\n"
    assert load_checkpoint(run / "checkpoint.npz")[2]["epoch"] == 1
    assert not (run / "model.npz").exists()
    monkeypatch.undo()
    code, out, err = run_main(capsys, *args, "--resume")
    assert code == 0 and "at epoch 1" in out and (run / "model.npz").exists(), err


def test_ctrl_c_in_the_first_epoch_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    data, run = tiny_idx(tmp_path / "data"), tmp_path / "run"
    _interrupt_on_step(monkeypatch, 2)
    code, _, err = run_main(capsys, *train_args(data, run, epochs=2))
    assert code == 130
    assert err == "xpnet: interrupted at epoch 1 step 1; no epoch had finished, so nothing was saved\n"
    assert not (run / "checkpoint.npz").exists()


def test_trainer_raises_training_interrupted_which_is_no_exception(tmp_path, monkeypatch):
    train, test = synthetic_digits(8, size=8), synthetic_digits(4, seed=1, size=8)
    trainer = Trainer(MLP(input_size=64, hidden_size_list=(4,), output_size=4), optim.SGD(), train, test,
                      epochs=2, batch_size=4, out_dir=str(tmp_path), progress=False)
    _interrupt_on_step(monkeypatch, 4)
    with pytest.raises(TrainingInterrupted) as exc:
        trainer.fit()
    e = exc.value
    assert isinstance(e, KeyboardInterrupt) and not isinstance(e, Exception)  # `except Exception` cannot eat it
    assert (e.epoch, e.step, e.checkpoint) == (2, 3, str(tmp_path / "checkpoint.npz"))


# -- kill -9 ----------------------------------------------------------------------------------------------
_KILLED_WRITER = """
import sys, time
from xpnet.fileio import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b"NEW" * 100000)
    f.flush()
    open(sys.argv[2], "w").close()  # ready: half-way through the write
    time.sleep(120)
"""


def test_kill_9_inside_an_atomic_write_leaves_the_old_file(tmp_path):
    dest, ready = tmp_path / "checkpoint.npz", tmp_path.parent / f"{tmp_path.name}.ready"
    dest.write_bytes(b"OLD CHECKPOINT")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(dest), str(ready)])
    _wait_for(ready, proc, timeout=60)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert dest.read_bytes() == b"OLD CHECKPOINT"
    stray = [n for n in os.listdir(tmp_path) if n != "checkpoint.npz"]
    assert len(stray) == 1 and stray[0].startswith(".checkpoint.npz.") and stray[0].endswith(".tmp")


def test_kill_9_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    data, run = tiny_idx(tmp_path / "data"), tmp_path / "run"
    proc = popen_cli(*train_args(data, run, epochs=FOREVER))
    _wait_for(run / "checkpoint.npz", proc)
    time.sleep(0.1)  # somewhere in the next epochs: training, evaluating or writing
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.communicate()
    k = load_checkpoint(run / "checkpoint.npz")[2]["epoch"]  # the last complete checkpoint, hash-verified
    code, out, err = run_main(capsys, *train_args(data, run, "--resume", epochs=k + 1))
    assert code == 0 and f"at epoch {k}" in out, err
    assert run_main(capsys, *train_args(data, tmp_path / "straight", epochs=k + 1))[0] == 0
    assert_same_arrays(model_arrays(run / "model.npz"), model_arrays(tmp_path / "straight" / "model.npz"))


# -- reproducibility --------------------------------------------------------------------------------------
def test_two_cli_runs_with_the_same_seed_are_bit_identical(tmp_path, capsys):
    data = tiny_idx(tmp_path / "data")
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run_main(capsys, *train_args(data, tmp_path / name, "--seed", seed, epochs=2))[0] == 0
    a, b, c = (model_arrays(tmp_path / n / "model.npz") for n in "abc")
    assert_same_arrays(a, b)
    assert not np.array_equal(a["fc1.W"], c["fc1.W"])  # the seed matters
    assert (tmp_path / "a" / "metrics.csv").read_text() != ""


def test_two_gpu_runs_with_the_same_seed_agree_within_tolerance(cuda):
    def run():
        model = DeepConvNet(output_size=4, seed=7, backend=cuda)
        Trainer(model, optim.Adam(), synthetic_digits(120, seed=2), synthetic_digits(40, seed=3), epochs=2,
                batch_size=40, seed=5, progress=False).fit()
        return model.state_dict()

    a, b = run(), run()
    # 6 Adam steps (lr 0.001) from gradients that may sum in another order (atomics): each a sum of at
    # most 40 x 28 x 28 terms (conv1's dW), a relative change of g moving Adam's step by as much; a
    # condition factor of 10 for gradients that are small sums of larger terms
    for k in a:
        assert_close(a[k], b[k], terms=6 * 40 * 28 * 28, scale=0.001 * 10, err_msg=k)


# -- out of memory ----------------------------------------------------------------------------------------
class _FakeOOM(Exception):
    """Stands in for cupy.cuda.memory.OutOfMemoryError on the CPU."""


@pytest.fixture
def fake_oom(monkeypatch):
    for be in {backends.get("numpy"), backends.current()}:  # the models below live on the current backend
        monkeypatch.setattr(be, "is_out_of_memory", lambda e: isinstance(e, _FakeOOM), raising=False)
    return monkeypatch


def test_out_of_memory_in_a_step_names_the_batch_size_and_keeps_the_checkpoint(tmp_path, fake_oom):
    train, test = synthetic_digits(8, size=8), synthetic_digits(4, seed=1, size=8)
    trainer = Trainer(MLP(input_size=64, hidden_size_list=(4,), output_size=4), optim.SGD(), train, test,
                      epochs=2, batch_size=4, out_dir=str(tmp_path), progress=False)
    _interrupt_on_step(fake_oom, 3, _FakeOOM)  # the first step of epoch 2
    with pytest.raises(TrainingError) as exc:
        trainer.fit()
    assert str(exc.value) == (f"out of GPU memory at batch size 4; try --batch-size 2; the last good checkpoint "
                              f"({tmp_path / 'checkpoint.npz'}) is intact")
    assert isinstance(exc.value.__cause__, _FakeOOM)


def test_out_of_memory_while_evaluating_and_at_batch_size_one(fake_oom):
    train, test = synthetic_digits(2, size=8), synthetic_digits(4, seed=1, size=8)

    def trainer(**kw):
        return Trainer(MLP(input_size=64, hidden_size_list=(4,), output_size=4), optim.SGD(), train, test,
                       epochs=1, progress=False, **kw)

    real = Model.forward_loss

    def forward_loss(self, x, t, train=True, **kw):
        if not train:
            raise _FakeOOM()
        return real(self, x, t, train, **kw)

    with fake_oom.context() as m:
        m.setattr(Model, "forward_loss", forward_loss)
        with pytest.raises(TrainingError, match=r"^out of GPU memory evaluating at batch size 3; "
                                                r"try eval_batch_size 1$"):
            trainer(batch_size=2, eval_batch_size=3).fit()
    _interrupt_on_step(fake_oom, 1, _FakeOOM)
    with pytest.raises(TrainingError, match="at batch size 1; the model does not fit on this device"):
        trainer(batch_size=1).fit()


def test_other_errors_in_a_step_are_not_mistaken_for_out_of_memory(fake_oom):
    train = synthetic_digits(4, size=8)
    trainer = Trainer(MLP(input_size=64, hidden_size_list=(4,), output_size=4), optim.SGD(), train, train,
                      epochs=1, progress=False)
    _interrupt_on_step(fake_oom, 1, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        trainer.fit()


@pytest.mark.parametrize("where", ["gather", "augment"])
def test_out_of_memory_gathering_or_augmenting_a_batch_names_the_batch_size(fake_oom, where):
    train = synthetic_digits(8, size=8)

    def augment(xb):
        raise _FakeOOM()

    trainer = Trainer(MLP(input_size=64, hidden_size_list=(4,), output_size=4), optim.SGD(), train, train,
                      epochs=1, batch_size=4, progress=False, augment=augment if where == "augment" else None)
    if where == "gather":
        def epoch():
            raise _FakeOOM()
            yield  # a generator, as BatchIterator.epoch is: the gather runs at the first next()

        fake_oom.setattr(trainer.iterator, "epoch", epoch)
    with pytest.raises(TrainingError, match=r"^out of GPU memory at batch size 4; try --batch-size 2$"):
        trainer.fit()


def test_out_of_memory_via_the_cli_is_one_line(tmp_path, capsys, fake_oom):
    _interrupt_on_step(fake_oom, 1, _FakeOOM)
    code, _, err = run_main(capsys, *train_args(tiny_idx(tmp_path / "data"), tmp_path / "run"))
    assert_one_line_error(code, err, "out of GPU memory at batch size 20; try --batch-size 10")


def test_host_memory_error_via_the_cli_is_one_line(tmp_path, capsys, monkeypatch):
    from xpnet.cli import train

    def load_dataset(*a, **kw):
        raise MemoryError("Unable to allocate 47.9 GiB for an array with shape (60000, 1, 28, 28)")

    monkeypatch.setattr(train, "load_dataset", load_dataset)
    code, _, err = run_main(capsys, *train_args(tmp_path, tmp_path / "run"))
    assert_one_line_error(code, err, "out of memory (Unable to allocate 47.9 GiB", "try a smaller --batch-size")


def test_gpu_out_of_memory_names_the_batch_size(cuda):
    pool = cuda.xp.get_default_memory_pool()
    rng = np.random.default_rng(0)
    x, t = rng.random((4096, 784), dtype=np.float32), rng.integers(0, 10, 4096)
    model = MLP(input_size=784, hidden_size_list=(4096, 4096), output_size=10, backend=cuda)
    trainer = Trainer(model, optim.Adam(), (x, t), (x[:8], t[:8]), epochs=1, batch_size=4096, progress=False)
    previous = pool.get_limit()
    # The limit counts the blocks the pool holds, cached ones too: free them, so earlier tests' leftovers
    # neither take the room nor lend it. 8 MiB of room: one batch (12.8 MB) or 4096x4096 activation (64 MiB)
    # does not fit, so the run fails in the gather or the forward pass, both inside the step's handler.
    pool.free_all_blocks()
    pool.set_limit(size=pool.total_bytes() + 8 * 2**20)
    try:
        with pytest.raises(TrainingError, match=r"^out of GPU memory at batch size 4096; try --batch-size 2048"):
            trainer.fit()
    finally:
        pool.set_limit(size=previous)


# -- backends and internal errors -------------------------------------------------------------------------
def test_train_on_cuda_without_cupy_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backends, "_instances", {k: v for k, v in backends._instances.items() if k != "cuda"})
    code, _, err = run_main(capsys, *train_args(tiny_idx(tmp_path / "data"), tmp_path / "run", "--backend", "cuda"))
    assert_one_line_error(code, err, "backend 'cuda' needs CuPy, which is not installed", "pip install")
    assert not (tmp_path / "run").exists()  # refused before the output directory was made


def test_train_on_gpu_without_a_device_is_one_line(tmp_path, capsys, fake_cupy):
    fake_cupy(RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"))
    code, _, err = run_main(capsys, *train_args(tiny_idx(tmp_path / "data"), tmp_path / "run", "--backend", "gpu"))
    assert_one_line_error(code, err, "no usable CUDA device", "cudaErrorNoDevice", "nvidia-smi")


@pytest.mark.skipif("cuda" in backends.available(), reason="a GPU is usable here: the command would train")
def test_xpnet_backend_cuda_env_for_train_is_one_line_from_the_real_command(tmp_path):
    args = train_args(tiny_idx(tmp_path / "data"), tmp_path / "run")
    p = subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "XPNET_BACKEND": "cuda"})
    why = "needs CuPy" if importlib.util.find_spec("cupy") is None else "no usable CUDA device"
    assert_one_line_error(p.returncode, p.stderr, why)
    assert p.returncode == 1


def test_an_internal_bug_is_one_line_without_debug_and_a_traceback_with_it(tmp_path, capsys, monkeypatch):
    from xpnet.cli import train

    def broken(*a, **kw):
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    monkeypatch.setattr(train, "load_dataset", broken)
    args = train_args(tmp_path, tmp_path / "run")
    code, _, err = run_main(capsys, *args)
    assert_one_line_error(code, err, "internal error AttributeError: 'NoneType' object has no attribute 'shape'",
                          "xpnet --debug")
    with pytest.raises(AttributeError):
        run_main(capsys, "--debug", *args)

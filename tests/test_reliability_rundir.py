"""Reliability: the run directory (one run at a time, nothing foreign overwritten), resume arguments,
best-effort console output and SIGTERM / double signals.

Cheap cases run ``xpnet.cli.main.main`` in this process; a lock held by another process, a closed or
full stdout and real signals use the real ``python -m xpnet``.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from reliability_helpers import assert_one_line_error, popen_cli, run_main, tiny_idx, train_args
from test_reliability_process import FOREVER, _wait_for

from xpnet.cli.main import main
from xpnet.rundir import RunLock
from xpnet.training import load_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_idx(tmp_path_factory.mktemp("rundir") / "data")


# -- one run at a time ------------------------------------------------------------------------------------
def test_a_run_directory_held_by_another_run_is_refused_at_once_naming_it(tmp_path, capsys, data):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(str(run), "xpnet train ..."):  # the other run (a second open file: flock conflicts)
        code, _, err = run_main(capsys, *train_args(data, run))
    assert_one_line_error(code, err, str(run), "another xpnet run is using this directory",
                          f"pid {os.getpid()} on ")
    assert sorted(os.listdir(run)) == [".xpnet.lock"]


def test_two_real_runs_on_one_directory_one_is_refused(tmp_path, data):
    run = tmp_path / "run"
    first = popen_cli(*train_args(data, run, epochs=FOREVER))
    _wait_for(run / "checkpoint.npz", first)
    second = subprocess.run([sys.executable, "-m", "xpnet", *train_args(data, run, "--resume", epochs=2)],
                            capture_output=True, text=True, timeout=120)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert second.returncode == 1 and f"pid {first.pid} on " in second.stderr, second.stderr
    assert "another xpnet run is using this directory" in second.stderr
    assert load_checkpoint(run / "checkpoint.npz")[2]["epoch"] >= 1  # the first run's work is intact


# -- nothing foreign is overwritten -----------------------------------------------------------------------
@pytest.mark.parametrize("name, content", [("model.npz", b"my model"), ("notes.txt", b"mine"),
                                           ("metrics.json", b"{}"), ("curves.png", b"png")],
                         ids=["model", "notes", "metrics", "curves"])
def test_out_holding_files_xpnet_did_not_write_is_refused(tmp_path, capsys, data, name, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_bytes(content)
    code, _, err = run_main(capsys, *train_args(data, run))
    assert_one_line_error(code, err, str(run), f"--out already holds {name}", "choose another --out")
    assert os.listdir(run) == [name] and (run / name).read_bytes() == content


def test_resume_into_a_directory_with_a_foreign_model_file_is_refused(tmp_path, capsys, data):
    run = tmp_path / "run"
    assert main(train_args(data, run)) == 0
    (run / "model.npz").write_bytes(b"the user's own model")
    (run / "notes.txt").write_text("mine")
    capsys.readouterr()
    code, _, err = run_main(capsys, *train_args(data, run, "--resume", epochs=2))
    assert_one_line_error(code, err, "model.npz", "notes.txt", "which xpnet did not write")
    assert (run / "model.npz").read_bytes() == b"the user's own model"


def test_out_that_is_a_dangling_symlink_is_named(tmp_path, capsys, data):
    (tmp_path / "run").symlink_to(tmp_path / "gone")
    code, _, err = run_main(capsys, *train_args(data, tmp_path / "run"))
    assert_one_line_error(code, err, "is a symbolic link to", "gone", "which does not exist")


def test_a_run_stopped_before_its_first_checkpoint_may_start_over(tmp_path, capsys, data):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".xpnet.lock").write_text("")
    (run / "train.log").write_text("an earlier try\n")
    code, out, err = run_main(capsys, *train_args(data, run))
    assert code == 0, err
    log = (run / "train.log").read_text()
    assert log.startswith("an earlier try\n") and "test accuracy" in log  # appended, never truncated


# -- resume: the run's own arguments ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_args(data, run, "--schedule", "cosine", "--seed", "3")) == 0
    return run


@pytest.mark.parametrize("extra, fragment", [
    (["--batch-size", "30"], "--batch-size 30 (the run used 20)"),
    (["--lr", "0.01"], "--lr 0.01 (the run used 0.001)"),
    (["--dtype", "float64"], "--dtype float64 (the run used float32)"),
    (["--dtype", "mixed"], "--dtype mixed (the run used float32)"),
    (["--schedule", "step"], "--schedule step (the run used cosine)"),
    (["--limit", "40"], "--limit 40 (the run used (none))"),
    (["--weight-decay", "0.1"], "--weight-decay 0.1 (the run used 0.0)"),
    (["--seed", "4"], "--seed 4 (the run used 3)"),
    (["--model-arg", "hidden_size_list=[7]"], "--model-arg hidden_size_list=[7] (the run used (none))"),
    (["--optimizer", "sgd"], "--optimizer sgd (the run used adam)"),
], ids=["batch", "lr", "dtype", "mixed", "schedule", "limit", "weight-decay", "seed", "model-arg",
        "optimizer"])
def test_resume_refuses_arguments_that_change_the_run(finished, capsys, data, extra, fragment):
    before = (finished / "checkpoint.npz").read_bytes()
    args = train_args(data, finished, "--schedule", "cosine", "--seed", "3", "--resume", *extra, epochs=1)
    code, _, err = run_main(capsys, *args)
    assert_one_line_error(code, err, fragment, "resume with the run's own arguments")
    assert (finished / "checkpoint.npz").read_bytes() == before


def test_resume_refuses_another_augmentation(finished):
    """(The CLI refuses --augment for the mlp before this check: asked directly here.)"""
    import argparse

    from xpnet.cli.resume import check_resume_args
    from xpnet.errors import RunDirError

    saved = load_checkpoint(finished / "checkpoint.npz")[2]["extra"]["config"]
    check_resume_args(finished / "checkpoint.npz", argparse.Namespace(**saved))  # the same run: accepted
    with pytest.raises(RunDirError, match=r"--augment rotate=5 \(the run used none\)"):
        check_resume_args(finished / "checkpoint.npz", argparse.Namespace(**{**saved, "augment": "rotate=5"}))


def test_resume_names_every_changed_argument_and_epochs_under_a_schedule(finished, capsys, data):
    args = train_args(data, finished, "--schedule", "cosine", "--resume", "--lr", "0.5", epochs=3)
    code, _, err = run_main(capsys, *args)
    assert_one_line_error(code, err, "--lr 0.5", "--seed 0 (the run used 3)", "--epochs 3 (the run used 1)")


# -- console output is best-effort ------------------------------------------------------------------------
def test_stdout_closed_early_never_costs_a_checkpoint(tmp_path, data):
    """``xpnet train ... | head -1``: the pipe closes after the first line; the run still ends and saves."""
    run = tmp_path / "run"
    proc = popen_cli(*train_args(data, run, epochs=3))
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith("training mlp") and err == ""
    assert load_checkpoint(run / "checkpoint.npz")[2]["epoch"] == 3 and (run / "model.npz").exists()
    assert "test accuracy" in (run / "train.log").read_text()  # every line is in the run's log


def test_stdout_on_a_full_device_never_stops_training(tmp_path, data):
    run = tmp_path / "run"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "xpnet", *train_args(data, run, epochs=2)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (run / "model.npz").exists() and "epoch   2/2" in (run / "train.log").read_text()


# -- SIGTERM and double signals ---------------------------------------------------------------------------
def test_sigterm_keeps_the_checkpoint_prints_the_resume_line_and_exits_143(tmp_path, data):
    run = tmp_path / "run"
    proc = popen_cli(*train_args(data, run, epochs=FOREVER))
    _wait_for(run / "curves.png", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert re.fullmatch(r"xpnet: stopped by SIGTERM at epoch \d+ step \d+; resume with: xpnet train .* --resume",
                        err.strip()), err
    assert load_checkpoint(run / "checkpoint.npz")[2]["epoch"] >= 1


@pytest.mark.parametrize("gap", [0.0, 0.005, 0.02])
def test_two_signals_in_quick_succession_stop_cleanly(tmp_path, data, gap):
    run = tmp_path / "run"
    proc = popen_cli(*train_args(data, run, epochs=FOREVER))
    _wait_for(run / "curves.png", proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    proc.send_signal(signal.SIGINT if gap else signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, 143) and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and "resume with:" in err, err


def test_a_second_signal_during_the_shutdown_is_ignored():
    """Deterministic: the second signal arrives while the first one's exception is being handled."""
    from xpnet.signals import Interrupted, stop_on_signals

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(Interrupted) as exc, stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler raises at the next bytecode boundary
            finally:  # the shutdown: a second and a third signal must not interrupt it
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
        assert exc.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is saved[signal.SIGINT]  # nothing left ignored for later children
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)

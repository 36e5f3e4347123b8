"""The prepared device check: its dry run without a GPU, and its phases' plumbing (timeouts, files, plan)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import device_check
from xpnet import backends

ROOT = device_check.ROOT


@pytest.mark.skipif("cuda" in backends.available(), reason="a usable GPU here: the check would really run")
def test_without_a_gpu_it_says_so_in_one_line_writes_nothing_and_exits_0(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "benchmarks", "device-check", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("device-check: no usable CUDA GPU here (") and \
        lines[0].endswith("nothing was run"), p.stdout
    assert not out.exists()


def test_a_hanging_step_is_killed_at_its_limit_and_the_phase_goes_on(tmp_path):
    env = device_check.phase_env()
    pid_file = tmp_path / "pid"
    hang = [sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            "print('started', flush=True); time.sleep(600)"]
    quick = [sys.executable, "-c", "print('3 passed in 0.1s')"]
    start = time.monotonic()
    record = device_check.run_phase("profile", [("a.log", hang, "started"), ("a.log", quick, "passed")], str(tmp_path),
                                    time.monotonic() + 6, env)
    assert time.monotonic() - start < 30
    hung, done = record["steps"]
    assert hung["timed_out"] and hung["status"] == "timed out" and hung["summary"] == "started"
    assert done["status"] == "ok" and done["summary"] == "3 passed in 0.1s"
    assert record["status"] == "timed out"
    assert _gone(int(pid_file.read_text()))  # the hung process was ended, not left running
    log = (tmp_path / "a.log").read_text()
    assert "killed at its time limit" in log and log.count("$ ") == 2


def _gone(pid, wait_s=5.0):
    """True once ``pid`` no longer exists (an orphan is reaped by init a moment after its parent dies)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_plan_runs_everything_on_cuda_in_at_most_8_files(tmp_path):
    env = device_check.phase_env()
    phases = dict(device_check.plan(str(tmp_path), str(tmp_path / "scratch"), env))
    assert list(phases) == ["train", "profile", "benchmarks", "tests"]
    train = " ".join(phases["train"][0][1])
    assert "xpnet train --backend cuda --epochs 2" in train
    suites = [argv for _, argv, _ in phases["benchmarks"]]
    assert [argv[3] for argv in suites] == list(device_check.SUITES)
    assert all(argv[4:8] == ["--backend", "cuda", "--compare", "torch"] for argv in suites)
    without_torch = dict(device_check.plan(str(tmp_path), str(tmp_path), env, {"cuda": "ok", "torch": None}))
    assert all("--compare" not in argv for _, argv, _ in without_torch["benchmarks"])
    assert phases["tests"][0][1][1:3] == ["-m", "pytest"]
    files = {log for steps in phases.values() for log, _, _ in steps} | {"profile.json", "benchmarks.json",
                                                                           "device_check.json"}
    assert len(files) <= 8, files
    assert sum(device_check.CAPS.values()) - device_check.CAPS["tests"] < device_check.DEFAULT_BUDGET_S - 120


def test_tests_run_with_the_cuda_backend_and_mnist_comes_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(device_check, "run_probe", lambda env, timeout: {"cuda": "ok"})
    seen = []

    def fake_phase(name, steps, out, deadline, env):
        seen.append((name, env.get("XPNET_DATA")))
        return {"name": name, "status": "ok", "steps": []}

    monkeypatch.setattr(device_check, "run_phase", fake_phase)
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist.npz").write_bytes(b"")
    assert device_check.main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]) == 0
    assert [s[0] for s in seen] == ["train", "profile", "benchmarks", "tests"]
    assert all(data == str(tmp_path / "data") for _, data in seen)
    summary = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert [p["name"] for p in summary["phases"]] == ["train", "profile", "benchmarks", "tests"]
    assert os.listdir(tmp_path / "out") == ["device_check.json"]


def test_the_tests_phase_runs_with_xpnet_backend_cuda(tmp_path):
    env = {**device_check.phase_env(), "XPNET_BACKEND": "numpy"}
    show = [sys.executable, "-c", "import os; print('backend', os.environ.get('XPNET_BACKEND'))"]
    for name, want in (("tests", "backend cuda"), ("train", "backend numpy")):
        record = device_check.run_phase(name, [(f"{name}.log", show, "backend")], str(tmp_path),
                                        time.monotonic() + 30, env)
        assert record["steps"][0]["summary"] == want


def test_without_the_mnist_cache_training_uses_a_synthetic_set(tmp_path):
    env = device_check.phase_env(str(tmp_path / "nowhere"))
    assert "XPNET_DATA" not in env
    train = " ".join(dict(device_check.plan("out", str(tmp_path), env))["train"][0][1])
    assert "synthetic_idx" in train and f"--dataset {tmp_path / 'synthetic'}" in train
    from benchmarks.device_steps import synthetic_idx
    from xpnet.datasets.idx import load_idx_dir

    synthetic_idx(str(tmp_path / "synthetic"), n_train=20, n_test=10)
    (x, t), (_, tt) = load_idx_dir(str(tmp_path / "synthetic"))
    assert x.shape == (20, 28, 28) and len(tt) == 10 and t.max() < 10


def test_prepare_data_writes_a_compressed_cache_the_loader_reads(tmp_path, monkeypatch):
    from benchmarks import device_steps
    from xpnet.datasets import mnist

    raw = {"train_images": np.zeros((50, 28, 28), np.uint8), "train_labels": np.arange(50, dtype=np.uint8) % 10,
           "test_images": np.ones((10, 28, 28), np.uint8), "test_labels": np.arange(10, dtype=np.uint8)}
    monkeypatch.setattr(mnist, "load_raw_mnist", lambda: raw)
    line = device_steps.prepare_data(str(tmp_path / "carry"))
    path = tmp_path / "carry" / "mnist.npz"
    assert line.startswith(f"wrote {path} (") and path.stat().st_size < sum(a.nbytes for a in raw.values())
    back = mnist._read_npz(str(path))
    assert all(np.array_equal(back[k], raw[k]) for k in raw)
    assert device_check.phase_env(str(tmp_path / "carry"))["XPNET_DATA"] == str(tmp_path / "carry")

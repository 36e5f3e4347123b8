"""``python -m benchmarks device-check --out DIR``: one prepared run of everything a GPU must show.

On a machine with a usable CUDA GPU, in at most ``--budget`` seconds (default 470: under 8 minutes), each
phase in its own process group under its own timeout, so one hang costs only its own share:

1. ``probe``: the CUDA backend starts (kernel compile check included); versions and plugins found.
2. ``train``: ``xpnet train`` for 2 epochs on MNIST from the cache in ``$XPNET_DATA`` (the GPU machine
   has no network; without the cache, a synthetic 28x28 IDX set, and the summary says so).
3. ``profile``: one DeepConvNet training step at batch 100, per layer, by the device's clock
   (:mod:`xpnet.profile`), and the whole step's time.
4. ``benchmarks``: every suite with ``--backend cuda --compare torch`` and short repeats.
5. ``tests``: the whole test suite with ``XPNET_BACKEND=cuda`` (in parallel when pytest-xdist is there).

It writes at most 8 files into DIR: ``device_check.json`` (rewritten after every phase: commands, exit
codes, seconds, timeouts and a summary line each), ``train.log``, ``profile.log``, ``profile.json``,
``benchmarks.log``, ``benchmarks.json``, ``tests.log``. It installs nothing and needs no network: run it
from a checkout (no ``pip install`` needed; the phases get ``PYTHONPATH`` set to it).

Without a usable GPU it prints one line saying why, writes nothing and exits 0 (CI runs that dry run).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUDGET_S = 470
# Each phase's own limit in seconds; the tests run last and take what the budget has left, up to theirs.
CAPS = {"probe": 45, "train": 90, "profile": 40, "benchmarks": 110, "tests": 300}
SUITES = ("train", "infer", "breakdown", "conv", "precision")
RESERVE_S = 15  # kept back from the budget: stopping a step that overruns (up to 12 s), writing the summary


def parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks device-check",
                                description="One prepared run on a GPU machine: tests, benchmarks, training, "
                                            "profile; a one-line no-op without a GPU.")
    p.add_argument("--out", help="folder for the (at most 8) result files (required unless --prepare-data)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for everything (default 470)")
    p.add_argument("--data", default=None,
                   help="MNIST cache folder holding mnist.npz (default: $XPNET_DATA, else CHECKOUT/.device-data)")
    p.add_argument("--prepare-data", metavar="DIR",
                   help="instead: write a compressed copy of the MNIST cache into DIR to carry to the GPU machine")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.prepare_data:
        from benchmarks.device_steps import prepare_data

        print(prepare_data(args.prepare_data))
        return 0
    if not args.out:
        parser().error("--out DIR is required")
    deadline = time.monotonic() + args.budget - RESERVE_S
    env = phase_env(args.data)
    probe = run_probe(env, min(CAPS["probe"], args.budget))
    if probe.get("cuda") != "ok":
        print(f"device-check: no usable CUDA GPU here ({probe.get('cuda')}); nothing was run")
        return 0
    os.makedirs(args.out, exist_ok=True)
    summary = {"checkout": ROOT, "budget_s": args.budget, "probe": probe, "data": env.get("XPNET_DATA"),
               "phases": []}
    with tempfile.TemporaryDirectory(prefix="xpnet-device-check-") as scratch:
        for name, steps in plan(args.out, scratch, env, probe):
            summary["phases"].append(run_phase(name, steps, args.out, deadline, env))
            write_summary(args.out, summary)
    print(f"device-check: {len(summary['phases'])} phases, results in {args.out}: "
          + "; ".join(f"{p['name']} {p['status']}" for p in summary["phases"]))
    return 0


# -- environment -----------------------------------------------------------------------------------------
def phase_env(data=None):
    """The phases' environment: the checkout importable, output unbuffered, MNIST from the cache if found."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    data = data or env.get("XPNET_DATA") or os.path.join(ROOT, ".device-data")
    if os.path.isfile(os.path.join(data, "mnist.npz")):
        env["XPNET_DATA"] = os.path.abspath(data)
    else:
        env.pop("XPNET_DATA", None)
        env["XPNET_DEVICE_CHECK_NO_MNIST"] = data
    return env


_PROBE = r"""
import importlib, json, shutil, sys
report = {"python": sys.version.split()[0]}
for name in ("numpy", "cupy", "torch", "pytest", "xdist", "pytest_timeout", "matplotlib", "tqdm", "mpi4py"):
    try:
        report[name] = getattr(importlib.import_module(name), "__version__", "present")
    except Exception as e:
        report[name] = None
report["mpiexec"] = shutil.which("mpiexec")
from xpnet import backends
reason = backends.unavailable_reason("cuda")
report["cuda"] = reason or "ok"
if reason is None:
    report["info"] = {k: str(v) for k, v in backends.get("cuda").info().items()}
print(json.dumps(report))
"""


def run_probe(env, timeout):
    """Start the CUDA backend in a child process; its report (``cuda``: "ok" or why not)."""
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"cuda": f"the CUDA probe did not answer within {timeout:.0f} s"}
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"cuda": f"the probe failed (exit {p.returncode}): {tail}"}
    return json.loads(lines[-1])


# -- the phases ------------------------------------------------------------------------------------------
def plan(out, scratch, env, probe=None):
    """``[(phase, [(log file, argv, summary pattern), ...])]`` in running order.

    ``probe``: :func:`run_probe`'s report; where it found no PyTorch the suites run without ``--compare torch``
    (with it they would stop at once, measuring nothing).
    """
    py = sys.executable
    compare = ["--compare", "torch"] if (probe or {}).get("torch", "assumed") else []
    data = [] if env.get("XPNET_DATA") else ["--dataset", os.path.join(scratch, "synthetic")]
    train = [py, "-m", "xpnet", "train", "--backend", "cuda", "--epochs", "2", "--out", os.path.join(scratch, "run"),
             "--no-progress", *data]
    if data:  # no MNIST cache: write the synthetic set first
        train = [py, "-c", f"from benchmarks.device_steps import synthetic_idx; synthetic_idx({data[1]!r})",
                 "&&", *train]
    profile = [py, "-m", "benchmarks.device_steps", "profile", os.path.join(out, "profile.json")]
    suites = [("benchmarks.log", [py, "-m", "benchmarks", s, "--backend", "cuda", *compare, "--repeats", "5",
                                  "--warmup", "2", "--json", os.path.join(scratch, f"{s}.json")], r"") for s in SUITES]
    tests = [py, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "--durations=15", os.path.join(ROOT, "tests")]
    return [
        ("train", [("train.log", train, "test accuracy")]),
        ("profile", [("profile.log", profile, "step")]),
        ("benchmarks", suites),
        ("tests", [("tests.log", tests + pytest_plugins_args(), "passed|failed|error")]),
    ]


def pytest_plugins_args():
    """Parallel workers (pytest-xdist) and a per-test timeout (pytest-timeout) where they are installed."""
    import importlib.util

    args = []
    if importlib.util.find_spec("xdist") is not None:
        args += ["-n", "8", "--dist", "loadfile"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        args += ["--timeout", "150"]
    return args


def run_phase(name, steps, out, deadline, env):
    """Run a phase's steps one after another, each under what is left of the phase's cap and the budget.

    The tests phase runs with ``XPNET_BACKEND=cuda``: every test that uses the current backend meets the GPU.
    """
    if name == "tests":
        env = {**env, "XPNET_BACKEND": "cuda"}
    start = time.monotonic()
    phase_end = min(start + CAPS[name], deadline)
    record = {"name": name, "steps": [], "status": "ok"}
    for i, (log_name, argv, pattern) in enumerate(steps):
        left = phase_end - time.monotonic()
        share = left if i == len(steps) - 1 else min(left, 1.5 * left / (len(steps) - i))  # one step cannot take all
        if left < 1:
            record["steps"].append({"command": _shell(argv), "status": "not run: no time left"})
            record["status"] = "incomplete"
            continue
        step = run_logged(argv, os.path.join(out, log_name), share, env, pattern)
        record["steps"].append(step)
        if step["status"] != "ok":
            record["status"] = step["status"] if record["status"] == "ok" else record["status"]
    if name == "benchmarks":
        merge_json(out, [s[1][-1] for s in steps])
    record["seconds"] = round(time.monotonic() - start, 1)
    return record


def run_logged(argv, log_path, timeout, env, pattern=""):
    """Run ``argv`` (``&&`` joins commands) appending its output to ``log_path``; killed at ``timeout``."""
    started = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"$ {_shell(argv)}\n")
        log.flush()
        proc = subprocess.Popen(["/bin/sh", "-c", _shell(argv)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            rc = proc.returncode
        seconds = round(time.monotonic() - started, 1)
        log.write(f"[exit {rc}{', killed at its time limit' if timed_out else ''} after {seconds} s]\n")
    status = "timed out" if timed_out else ("ok" if rc == 0 else f"failed (exit {rc})")
    return {"command": _shell(argv), "log": os.path.basename(log_path), "rc": rc, "seconds": seconds,
            "timed_out": timed_out, "status": status, "summary": summary_line(log_path, pattern)}


def _kill_group(proc):
    """Stop the step's whole process group (mpiexec ranks, pytest workers): SIGINT first, so pytest still
    prints its summary of the failures so far, then SIGTERM, then SIGKILL (at most ~12 s in all)."""
    for sig, wait in ((signal.SIGINT, 8), (signal.SIGTERM, 3), (signal.SIGKILL, 1)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _shell(argv):
    import shlex

    return " ".join(a if a == "&&" else shlex.quote(a) for a in argv)


def summary_line(log_path, pattern):
    """The log's last line matching ``pattern`` (a regular expression), else its last line."""
    import re

    with open(log_path, errors="replace") as f:
        lines = [line.rstrip() for line in f if line.strip() and not line.startswith(("$ ", "[exit "))]
    matching = [line for line in lines if pattern and re.search(pattern, line)]
    return (matching or lines or [""])[-1][:300]


def merge_json(out, json_flags):
    """The suites' JSON documents (``--json PATH`` arguments) as one ``benchmarks.json``, by suite."""
    merged = {}
    for path in json_flags:
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            merged[os.path.basename(path)] = {"missing": str(e)}
            continue
        merged.update(doc.get("results", {}))
        merged.setdefault("machine", doc.get("machine"))
    _write_json(os.path.join(out, "benchmarks.json"), merged)


def write_summary(out, summary):
    _write_json(os.path.join(out, "device_check.json"), summary)


def _write_json(path, doc):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, default=str)
    os.replace(tmp, path)

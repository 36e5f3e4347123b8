"""The benchmark suites run end to end at --quick sizes (seconds), so they never rot.

They run as users run them, ``python -m benchmarks ...`` from the checkout's root, in a subprocess
with one BLAS thread (quick and steady on a busy machine).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tolerance import assert_close

from xpnet import backends

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "MPLBACKEND": "Agg"}


def run_python(*args, timeout=240):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def benchmarks(*args):
    return run_python("-m", "benchmarks", *args)


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = benchmarks("all", "--quick", "--json", str(out / "all.json"), "--plots", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "all.json").read_text()), proc.stdout


def test_all_quick_writes_json_with_machine_and_every_suite(quick_all):
    _, doc, stdout = quick_all
    assert doc["quick"] is True and doc["suites"] == ["breakdown", "train", "infer", "conv", "precision", "launches"]
    machine = doc["machine"]
    for key in ("cpu", "cores", "blas", "blas_threads", "numpy", "xpnet", "torch", "date", "backends"):
        assert key in machine
    assert machine["blas_threads"] == 1 and "numpy" in machine["backends"]
    assert set(doc["results"]) == {"breakdown", "train", "infer", "conv", "precision", "launches"}
    launched = doc["results"]["launches"]["counts"]["step"]
    assert launched["launches"] > 0 and "launches" in stdout
    assert "CPU:" in stdout and "BLAS" in stdout and "reduced for --quick" in stdout


def test_breakdown_result(quick_all):
    _, doc, _ = quick_all
    result = doc["results"]["breakdown"]
    alexnet, deep = result["models"]["alexnet"], result["models"]["deep_convnet"]
    assert alexnet["phases"] == ["forward"] and deep["phases"] == ["forward", "backward"]
    assert alexnet["input"] == [3, 67, 67]
    rows = alexnet["backends"]["numpy"]["rows"]
    assert [r["type"] for r in rows].count("norm") == 2 and rows[-1]["output_shape"] == [2, 1000]
    by_type = {r["type"]: r for r in deep["backends"]["numpy"]["by_type"]}
    assert by_type["conv"]["layers"] == 6 and by_type["conv"]["backward_share"] > 0
    n_layers = sum(r["layers"] for r in by_type.values())  # the shares are fractions of one sum over the layers
    assert_close(sum(r["forward_share"] for r in by_type.values()), 1.0, terms=2 * n_layers)
    assert result["reference"]["conv_share"] == {"cpu": 0.89, "gpu": 0.95}


def test_train_and_conv_results(quick_all):
    _, doc, _ = quick_all
    train = doc["results"]["train"]
    row = train["rows"][0]
    assert row["backend"] == "numpy" and row["batch"] == 4 and row["xpnet"]["images_per_s"] > 0
    assert "torch" not in row and train["compare"] is None
    infer = doc["results"]["infer"]["rows"][0]
    assert infer["backend"] == "numpy" and infer["batch"] == 4 and infer["xpnet"]["images_per_s"] > 0
    conv = doc["results"]["conv"]
    assert conv["peak"]["numpy"]["gflops"] > 0
    layers = [r for r in conv["layers"] if r["backend"] == "numpy"]
    assert [r["model"] for r in layers] == ["deep_convnet"] * 6 + ["alexnet"] * 5
    for r in layers:
        # the pieces are the layer plan's own stages (NumpyBackend.conv_stages), not a stand-in
        if r["algorithm"] == "im2col":
            assert r["forward"]["im2col_ms"] == r["forward_stages_ms"]["im2col"] > 0
            assert r["backward"]["dx_copy_ms"] > 0 and "gemm dW" in r["backward_stages_ms"]
        else:  # the direct kernel: its calls are the products, there is no copy stage
            assert r["algorithm"] == "direct" and r["stride"] == [1, 1]
            assert r["forward"]["products_ms"] == r["forward_stages_ms"]["direct"] > 0
            assert set(r["backward_stages_ms"]) == {"direct dW", "direct dx"} and r["backward"]["dx_copy_ms"] == 0
        for phase in ("forward", "backward"):
            p = r[phase]
            assert p["gflops"] > 0 and p["peak_fraction"] > 0 and p["products_ms"] > 0 and p["rest_ms"] >= 0
    # AlexNet's strided conv1 stays on im2col wherever the direct kernel runs (stride 1 only)
    assert layers[6]["algorithm"] == "im2col" and layers[6]["stride"] == [4, 4]
    dcn = conv["totals"]["numpy"]["deep_convnet"]
    assert dcn["layers"] == 6
    for key, want in (("gflop", 3 * sum(r["forward_gflop"] for r in layers[:6])),  # sums of 6 in float64
                      ("forward_products_ms", sum(r["forward"]["products_ms"] for r in layers[:6])),
                      ("backward_ms", sum(r["backward"]["median_ms"] for r in layers[:6]))):
        assert_close(dcn[key], want, terms=6 + 1, scale=want, err_msg=key)


def test_precision_result(quick_all):
    _, doc, _ = quick_all
    rows = [r for r in doc["results"]["precision"]["rows"] if r["backend"] == "numpy"]
    assert [r["dtype"] for r in rows] == ["float64", "float32", "float16", "bfloat16"]
    assert all(r["images_per_s"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows[:3])
    assert rows[0]["max_score_difference"] == 0 and rows[2]["max_score_difference"] < 1e-2
    assert "NumPy has no bfloat16" in rows[3]["unsupported"]


def test_plots_exist(quick_all):
    out, doc, _ = quick_all
    names = ["breakdown_alexnet_forward.png", "breakdown_deep_convnet_forward.png",
             "breakdown_deep_convnet_backward.png", "train_throughput.png", "infer_throughput.png",
             *(f"conv_split_{b}.png" for b in doc["settings"]["backends"]), "precision_throughput.png"]
    for name in names:
        path = out / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    listed = [p for suite in doc["results"].values() for p in suite["plots"]]
    assert sorted(Path(p).name for p in listed) == sorted(names)


def test_train_compare_torch(tmp_path):
    pytest.importorskip("torch")
    proc = benchmarks("train", "--quick", "--backend", "numpy", "--compare", "torch", "--batch-sizes", "3",
                      "--repeats", "2", "--json", str(tmp_path / "t.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "t.json").read_text())["results"]["train"]
    row = result["rows"][0]
    assert row["batch"] == 3 and row["torch_device"] == "cpu"
    assert row["torch"]["images_per_s"] > 0 and row["ratio_xpnet_over_torch"] > 0
    assert row["max_score_difference"] < 1e-3  # the twin really is the same network
    assert result["torch"]["threads"] == result["blas_threads"] == 1
    assert "xpnet/torch" in proc.stdout


def test_compare_torch_without_torch_says_how_to_install():
    code = ("import sys; sys.modules['torch'] = None; from benchmarks.cli import main; "
            "sys.exit(main(['train', '--quick', '--compare', 'torch']))")
    proc = run_python("-c", code)
    assert proc.returncode != 0
    assert "pip install torch==2.13.0" in proc.stderr


def test_usage_errors():
    assert benchmarks("nosuch").returncode == 2
    assert benchmarks("train", "--batch-sizes", "0").returncode == 2
    if "cuda" not in backends.available():
        proc = benchmarks("train", "--quick", "--backend", "cuda")
        assert proc.returncode == 2 and "cuda" in proc.stderr


def test_interleaved_turns_open_with_an_untimed_call():
    from benchmarks import timing

    calls, clock = [], iter(range(1000))

    class Timer:  # elapsed_ms = a counter, so each timed call is identifiable
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.elapsed_ms = float(next(clock))

    contenders = {name: (lambda name=name: calls.append(name), Timer) for name in ("a", "b")}
    result = timing.interleaved(contenders, repeats=4, warmup=1, block=3)
    # warm-up a b; turn 1: a (untimed) a a a, b (untimed) b b b; turn 2 reversed: b + b, a + a
    assert "".join(calls) == "ab" + "aaaa" + "bbbb" + "bb" + "aa"
    assert result["a"]["repeats"] == result["b"]["repeats"] == 4
    # timer readings 0..11 in call order: a untimed 0, timed 1-3; b 4, 5-7; b 8, 9; a 10, 11
    assert (result["a"]["min_ms"], result["a"]["max_ms"], result["b"]["min_ms"], result["b"]["max_ms"]) == (1, 11, 5, 9)
    assert [c for c in timing.interleaved({"x": contenders["a"]}, 3, 0, block=2)] == ["x"]
    assert calls[-3:] == ["a", "a", "a"]  # one contender: no untimed opening call


"""Peak RSS of xpnet reading small hostile files (issue 18 acceptance: < 500 MB for any input < 10 MB).

Run from a checkout: ``python benchmarks/prototypes/bombs.py [WORKDIR]``. Each case runs the real
command under ``/usr/bin/time -v`` and prints the input's size, the peak RSS and xpnet's one-line answer.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
from reliability_helpers import deflate_bomb_npz, gzip_bomb_idx, tiny_idx, train_args  # noqa: E402

from xpnet import serialization  # noqa: E402
from xpnet.models import MLP  # noqa: E402


def measure(name, path, argv, env=None):
    size = os.path.getsize(path) / 2**20  # before: a refused cache is moved aside
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    rss = next(int(line.split()[-1]) for line in done.stderr.splitlines() if "Maximum resident" in line) / 1024
    answer = next((line for line in done.stderr.splitlines() if line.startswith("xpnet:")), done.stdout.strip())
    print(f"| {name} | {size:.2f} MB | {rss:.0f} MB | exit {done.returncode} | {answer[:150]} |", flush=True)


def main(work, skip=0):
    data = tiny_idx(os.path.join(work, "data"))
    run = os.path.join(work, "run")
    subprocess.run([sys.executable, "-m", "xpnet", *train_args(data, run)], check=True, capture_output=True)
    if not skip:
        print("| case | input | peak RSS | exit | message |\n|---|---|---|---|---|")
        _npz_bombs(work, data, run)
    _other_bombs(work, data)


def _npz_bombs(work, data, run):
    bomb = deflate_bomb_npz(os.path.join(work, "bomb.npz"), "fc1.W", 4 << 30, {"__meta__": json.dumps({})})
    measure("model .npz, deflate bomb declaring 4 GiB", bomb, ["-m", "xpnet", "eval", bomb, "--dataset", data])
    ckpt = deflate_bomb_npz(os.path.join(run, "checkpoint.npz"), "model/fc1.W", 4 << 30)
    measure("checkpoint .npz, deflate bomb declaring 4 GiB (--resume)", ckpt,
            ["-m", "xpnet", *train_args(data, run, "--resume", epochs=2)])


def _other_bombs(work, data):
    cache = os.path.join(work, "cache")
    os.makedirs(cache)
    cbomb = deflate_bomb_npz(os.path.join(cache, "mnist.npz"), "train_images", 4 << 30)
    measure("MNIST cache mnist.npz, deflate bomb declaring 4 GiB (read, refused, moved aside)", cbomb,
            ["-c", "import sys; from xpnet.datasets.mnist import _read_cache; _read_cache(sys.argv[1])", cbomb])
    bad = os.path.join(work, "baddata")
    tiny_idx(bad)
    gbomb = gzip_bomb_idx(os.path.join(bad, "train-images-idx3-ubyte.gz"), 3_000_000, 28)
    measure("IDX .gz bomb, header and content 2.35 GB (train --dataset)", gbomb,
            ["-m", "xpnet", *train_args(bad, os.path.join(work, "out"))])
    model = MLP(input_size=144, hidden_size_list=[3], output_size=3)
    meta = serialization.model_meta(model)
    meta["config"]["hidden_size_list"] = [1 << 24, 1 << 24]  # 2.8e14 weights declared, 447 held
    huge = os.path.join(work, "huge.npz")
    serialization.write_npz(huge, model.state_dict(), meta)
    measure("model file whose valid config declares 2.8e14 weights", huge,
            ["-m", "xpnet", "eval", huge, "--dataset", data])
    manifest = os.path.join(work, "big.json")
    with open(manifest, "w") as f:
        f.write('{"format": "xpnet-ensemble", "members": [' + ",".join(['{"path": "x", "sha256": "0"}'] * 330_000))
    measure("ensemble manifest of 9.6 MB (truncated JSON)", manifest, ["-m", "xpnet", "eval", manifest,
                                                                      "--dataset", data])
    deep = os.path.join(work, "deep.json")
    with open(deep, "w") as f:
        f.write("[" * 900_000)
    measure("ensemble manifest nested 900,000 deep", deep, ["-m", "xpnet", "eval", deep, "--dataset", data])


if __name__ == "__main__":
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="xpnet-bombs-")
    main(work, skip=int(sys.argv[2:3] == ["--skip-npz"]))

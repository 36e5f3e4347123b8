"""Reliability: small hostile files (decompression bombs, huge declared models) and edited metadata.

Every file xpnet reads goes through one bounded reader: the bombs are refused with one line naming the
file, and a fresh process reading them stays far below the memory the file declares (peak RSS measured).
"""

import gzip
import json

import numpy as np
import pytest
import test_reliability_files
from reliability_helpers import (
    assert_one_line_error,
    deflate_bomb_npz,
    gzip_bomb_idx,
    peak_rss_mb,
    run_main,
    tiny_idx,
    train_args,
)
from test_datasets import fake_raw

import xpnet
from xpnet import serialization
from xpnet.errors import FileFormatError
from xpnet.models import MLP

base_run, run_copy = test_reliability_files.base_run, test_reliability_files.run_copy  # the shared finished run
BOMB = 128 << 20  # bytes each bomb declares (~130 KB on disk); a reader that believes it needs that much
RSS_LIMIT_MB = 100  # a fresh Python with NumPy and xpnet peaks at ~40 MB


def _load_child(path, call="xpnet.load(sys.argv[1])"):
    code = (f"import sys, xpnet\nfrom xpnet.training import load_checkpoint\ntry:\n {call}\n"
            "except Exception as e: print(e)")
    return peak_rss_mb(code, path)


# -- bombs: refused, and bounded in memory ---------------------------------------------------------------
def test_deflate_bomb_model_file_is_refused_in_bounded_memory(tmp_path):
    bomb = deflate_bomb_npz(tmp_path / "bomb.npz", "fc1.W", BOMB, {"__meta__": np.array("{}")})
    assert bomb.stat().st_size < 1 << 20
    rss, out, err = _load_child(bomb)
    assert "decompression bomb" in out and str(bomb) in out, (out, err)
    assert rss < RSS_LIMIT_MB, rss


def test_deflate_bomb_checkpoint_is_refused_in_bounded_memory(tmp_path, capsys, run_copy):
    data, run_dir = run_copy
    deflate_bomb_npz(run_dir / "checkpoint.npz", "model/fc1.W", BOMB)
    code, _, err = run_main(capsys, *train_args(data, run_dir, "--resume", epochs=2))
    assert_one_line_error(code, err, "checkpoint.npz", "decompression bomb")
    rss, out, _ = _load_child(run_dir / "checkpoint.npz", "load_checkpoint(sys.argv[1])")
    assert "decompression bomb" in out and rss < RSS_LIMIT_MB, (rss, out)


def test_gzip_bomb_idx_is_refused_before_allocating(tmp_path, capsys):
    data = tiny_idx(tmp_path / "data")
    bomb = gzip_bomb_idx(tmp_path / "data" / "train-images-idx3-ubyte.gz", BOMB // 144, 12)
    code, _, err = run_main(capsys, *train_args(data, tmp_path / "out"))
    assert_one_line_error(code, err, str(bomb), "more than 16x", "decompression bomb")
    rss, out, _ = peak_rss_mb("import sys\nfrom xpnet.datasets.idx import read_idx\ntry:\n read_idx(sys.argv[1])\n"
                              "except Exception as e: print(e)", bomb)
    assert "decompression bomb" in out and rss < RSS_LIMIT_MB, (rss, out)


def test_mnist_cache_bomb_is_moved_aside_not_expanded(tmp_path, monkeypatch):
    from test_datasets import counting_source, expect

    from xpnet.datasets import mnist

    raw = fake_raw()
    expect(monkeypatch, raw)
    monkeypatch.setattr(mnist, "SOURCES", [counting_source(raw)[0]])
    monkeypatch.setenv("XPNET_DATA", str(tmp_path))
    deflate_bomb_npz(tmp_path / "mnist.npz", "train_images", BOMB)
    size = (tmp_path / "mnist.npz").stat().st_size
    with pytest.warns(UserWarning, match="decompression bomb.*moved it to"):
        mnist.load_raw_mnist()
    assert (tmp_path / "mnist.npz.refused").stat().st_size == size  # the user's file is kept


def test_model_config_declaring_a_huge_model_is_refused_before_building(tmp_path):
    model = MLP(input_size=4, hidden_size_list=[3], output_size=2)
    path = tmp_path / "huge.npz"
    meta = serialization.model_meta(model)
    meta["config"]["hidden_size_list"] = [16_000_000]  # 4 x 16M weights: 256 MB before the state is checked
    serialization.write_npz(path, model.state_dict(), meta)  # a valid hash: only the declared size is wrong
    rss, out, err = _load_child(path)
    assert "declares a larger model than the file's 23 values" in out and "'config'" in out, (out, err)
    assert rss < RSS_LIMIT_MB, rss


def test_npy_renamed_npz_says_so(tmp_path, capsys, base_run):
    path = tmp_path / "model.npz"
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").rename(path)
    code, _, err = run_main(capsys, "eval", path, "--dataset", base_run / "data")
    assert_one_line_error(code, err, str(path), "an .npy file, not an .npz archive")


# -- metadata: covered by the hash, checked by type and range ---------------------------------------------
def _rewrite(path, fmt, edit, rehash=True):
    arrays, meta = serialization.read_npz(path, fmt)
    arrays, meta = edit(arrays, meta) or (arrays, meta)
    if rehash:
        serialization.write_npz(path, arrays, meta)
    else:  # edited by hand: the stored hash stays
        np.savez(path, **arrays, __meta__=np.array(json.dumps(meta)))


def _set(key, value):
    def edit(arrays, meta):
        meta[key] = value
    return edit


@pytest.mark.parametrize("key, value", [("epoch", -5), ("dtype", "float16"), ("history", []),
                                        ("rng", {"model": {}, "iterator": {}, "augment": None})],
                         ids=["epoch", "dtype", "history", "rng"])
def test_metadata_edited_by_hand_fails_the_content_hash(run_copy, capsys, key, value):
    data, run_dir = run_copy
    _rewrite(run_dir / "checkpoint.npz", "xpnet-checkpoint", _set(key, value), rehash=False)
    code, _, err = run_main(capsys, *train_args(data, run_dir, "--resume", epochs=2))
    assert_one_line_error(code, err, "checkpoint.npz", "content hash mismatch")


@pytest.mark.parametrize("edit, fragments", [
    (_set("epoch", -5), ["field 'epoch'", "expected an integer >= 1, got -5"]),
    (_set("epoch", 7), ["field 'history'", "expected a list of 7 epoch records"]),
    (_set("epoch", "1"), ["field 'epoch'", "got '1'"]),
    (_set("history", [{"epoch": 1, "test_acc": "high"}]), ["field 'history[0].test_acc'", "finite number"]),
    (_set("optimizer", {"type": "Adam", "t": -1, "hyperparams": {}}), ["field 'optimizer.t'"]),
    (_set("precision", "mixed"), ["field 'precision'", "expected an object with 'type'"]),
    (_set("rng", {"model": {}, "iterator": {"state": "x"}, "augment": None}), ["field 'rng.iterator'"]),
    (_set("frozen", ["no.such.param"]), ["field 'frozen'", "matches no parameter"]),
], ids=["epoch-negative", "epoch-beyond-history", "epoch-text", "history-value", "optimizer-step", "precision", "rng",
    "frozen"])
def test_checkpoint_fields_out_of_range_are_named(run_copy, capsys, edit, fragments):
    data, run_dir = run_copy
    _rewrite(run_dir / "checkpoint.npz", "xpnet-checkpoint", edit)
    before = (run_dir / "checkpoint.npz").read_bytes()
    code, _, err = run_main(capsys, *train_args(data, run_dir, "--resume", epochs=2))
    assert_one_line_error(code, err, "checkpoint.npz", *fragments)
    assert (run_dir / "checkpoint.npz").read_bytes() == before


def _weights(fn):
    def edit(arrays, meta):
        arrays["fc1.W"] = fn(arrays["fc1.W"])
    return edit


@pytest.mark.parametrize("edit, fragments", [
    (_weights(lambda w: w.astype(np.complex64)), ["field 'fc1.W'", "got complex64"]),
    (_weights(lambda w: w.astype(np.int64)), ["field 'fc1.W'", "got int64"]),
    (_weights(lambda w: np.where(w > 0, np.nan, w).astype(w.dtype)), ["field 'fc1.W'", "NaN or infinite"]),
    (_set("config", {"input_size": 144, "hidden_size_list": [100, 100], "output_size": 3, "colour": "red"}),
     ["field 'config.colour'", "mlp has no argument 'colour'"]),
    (_set("config", {"input_size": 144, "hidden_size_list": "abc", "output_size": 3}),
     ["field 'config'", "hidden_size_list must be a list of integers"]),
    (_set("config", []), ["field 'config'", "expected an object"]),
    (_set("dtype", "int8"), ["field 'dtype'", "got 'int8'"]),
    (_set("format_version", "2"), ["field 'format_version'"]),
], ids=["complex", "int64", "nan", "unknown-key", "bad-value", "config-list", "dtype", "version-text"])
def test_model_file_fields_are_checked_by_type_and_range(run_copy, capsys, edit, fragments):
    data, run_dir = run_copy
    _rewrite(run_dir / "model.npz", "xpnet-model", edit)
    code, _, err = run_main(capsys, "eval", run_dir / "model.npz", "--dataset", data)
    assert_one_line_error(code, err, "model.npz", *fragments)


def test_version_1_files_still_load(run_copy):
    """Files written before the hash covered the metadata load, with every other check still applied."""
    _, run_dir = run_copy
    arrays, meta = serialization.read_npz(run_dir / "model.npz", "xpnet-model")
    meta = {**meta, "format_version": 1, "sha256": serialization.arrays_sha256(arrays)}
    np.savez(run_dir / "v1.npz", **arrays, __meta__=np.array(json.dumps(meta)))
    assert xpnet.load(run_dir / "v1.npz").num_params() == sum(a.size for a in arrays.values())
    arrays["fc1.W"] = arrays["fc1.W"] + 1
    np.savez(run_dir / "v1.npz", **arrays, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(FileFormatError, match="content hash mismatch"):
        xpnet.load(run_dir / "v1.npz")


# -- ensemble manifests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("manifest, fragments", [
    ('{"format": "xpnet-ensemble", "members": [{"path": "model.npz"}]}', ["field 'members[0].sha256'"]),
    ('{"format": "xpnet-ensemble", "members": ["model.npz"]}', ["field 'members[0]'", "got str"]),
    ('{"format": "xpnet-ensemble", "members": {"a": 1}}', ["field 'members'"]),
    ('{"format": "xpnet-ensemble", "members": [{"path": 3, "sha256": "00"}]}', ["field 'members[0].path'"]),
    ('["xpnet-ensemble"]', ["not an xpnet ensemble manifest"]),
    ('{"format": "xpnet-ensemble", "members": [' * 5000, ["invalid JSON"]),
    ("\udcff", ["invalid JSON"]),
], ids=["no-sha", "string-member", "members-object", "path-number", "list", "deep", "binary"])
def test_malformed_ensemble_manifest_is_one_line_naming_the_field(run_copy, capsys, manifest, fragments):
    data, run_dir = run_copy
    path = run_dir / "ens.json"
    path.write_bytes(manifest.encode("utf-8", "surrogateescape"))
    code, _, err = run_main(capsys, "eval", path, "--dataset", data)
    assert_one_line_error(code, err, str(path), *fragments)


def test_gzip_concatenated_members_and_honest_files_still_read(tmp_path):
    """The bounded reader reads what gzip.open did: several concatenated gzip members of one IDX file."""
    from test_datasets import idx_bytes

    from xpnet.datasets.idx import read_idx

    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    blob = idx_bytes(images)
    (tmp_path / "x.gz").write_bytes(gzip.compress(blob[:30]) + gzip.compress(blob[30:]))
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), images)

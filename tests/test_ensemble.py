"""Ensembles: averaged softmax, manifests that refuse changed members, and the CLI around them."""

import json
import shutil

import numpy as np
import pytest
from test_cli import assert_one_line_error, make_idx_dir
from tolerance import assert_close

from xpnet import backends
from xpnet.cli.main import main
from xpnet.ensemble import Ensemble, load
from xpnet.errors import FileFormatError, ShapeError
from xpnet.models import MLP, SimpleConvNet


def small(seed, classes=4):
    return SimpleConvNet(input_dim=(1, 8, 8), filter_num=3, filter_size=3, hidden_size=8, output_size=classes,
                         weight_init_std=0.5, seed=seed)


def np_softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predictions_are_the_mean_of_the_members_softmax(backend):
    x = np.random.default_rng(0).random((12, 1, 8, 8)).astype(np.float32)
    models = [small(s).to(backend) for s in range(3)]
    ens = Ensemble(models)
    want = np.mean([np_softmax(backend.asnumpy(m.predict(x)).astype(np.float64)) for m in models], axis=0)
    got = backend.asnumpy(ens.predict_proba(x))
    # the same logits: a float32 softmax over 4 classes (exp, sum, divide) and a mean of 3, all <= 1
    assert_close(got, want, terms=4 + 2 + 3)
    t = want.argmax(axis=1)
    assert ens.accuracy(x, t, batch_size=5) == 1.0
    assert ens.accuracy(x, (t + 1) % 4) == 0.0
    assert len(ens.member_accuracies(x, t)) == 3


def test_members_must_agree_on_classes():
    with pytest.raises(ShapeError, match=r"disagree on the number of classes: \[3, 4\]"):
        Ensemble([small(0, classes=4), small(1, classes=3)])
    with pytest.raises(ValueError, match="at least one model"):
        Ensemble([])


def test_manifest_round_trip_survives_a_move_and_refuses_changed_members(tmp_path):
    paths = []
    for s in range(2):
        paths.append(str(tmp_path / "run" / f"m{s}.npz"))
        (tmp_path / "run").mkdir(exist_ok=True)
        small(s).save(paths[-1])
    Ensemble.from_files(paths).save(str(tmp_path / "run" / "ensemble.json"))
    shutil.move(str(tmp_path / "run"), str(tmp_path / "moved"))
    x = np.random.default_rng(1).random((5, 1, 8, 8)).astype(np.float32)
    before = Ensemble([small(0), small(1)]).predict_proba(x)
    after = load(str(tmp_path / "moved")).predict_proba(x)
    np.testing.assert_array_equal(backends.of(after).asnumpy(after), backends.of(before).asnumpy(before))
    small(7).save(str(tmp_path / "moved" / "m1.npz"))
    with pytest.raises(FileFormatError, match="member m1.npz changed since the ensemble was saved"):
        load(str(tmp_path / "moved" / "ensemble.json"))
    (tmp_path / "moved" / "m1.npz").unlink()
    with pytest.raises(FileFormatError, match="member m1.npz is missing"):
        load(str(tmp_path / "moved" / "ensemble.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="not an ensemble manifest"):
        load(str(tmp_path / "bad.json"))
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(FileFormatError, match="not an xpnet ensemble manifest"):
        load(str(tmp_path / "other.json"))


def test_save_needs_member_files():
    with pytest.raises(ValueError, match="save each model first"):
        Ensemble([MLP(input_size=4, hidden_size_list=[3], output_size=2)]).save("x.json")


def test_cli_trains_evaluates_and_resumes_an_ensemble(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(data, n_train=150, n_test=60)
    out = tmp_path / "ens"
    common = ["train", "--dataset", str(data), "--model", "simple_convnet", "--epochs", "1", "--batch-size", "30",
              "--lr", "0.01", "--augment", "shift=1", "--ensemble", "2", "--out", str(out), "--no-progress"]
    assert main(common) == 0
    text = capsys.readouterr().out
    assert "member 2/2: seed 1" in text and "ensemble of 2" in text
    last = text.strip().splitlines()[-2]
    assert last.startswith("test accuracy: ")
    assert (out / "member0" / "model.npz").exists() and (out / "member1" / "model.npz").exists()
    assert main(["eval", str(out), "--dataset", str(data)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last
    assert main(["ensemble", str(out / "member0" / "model.npz"), str(out / "member1" / "model.npz"), "--dataset",
                 str(data), "--save", str(tmp_path / "pair.json")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-2] == last
    assert main([*common, "--ensemble", "3", "--resume"]) == 0
    text = capsys.readouterr().out
    assert text.count("already trained") == 2 and "member 3/3: seed 2" in text
    assert len(json.loads((out / "ensemble.json").read_text())["members"]) == 3


@pytest.mark.parametrize("args, fragment", [
    (["train", "--ensemble", "0"], "--ensemble must be positive, got 0"),
    (["train", "--ensemble", "2", "--distributed"], "--ensemble cannot be combined with --distributed"),
    (["train", "--model", "mlp", "--augment", "default"], "--augment needs image input"),
    (["eval", "nothing.json"], "nothing.json"),
])
def test_cli_errors_are_one_line(args, fragment, capsys):
    code = main(args)
    assert_one_line_error(code, capsys.readouterr().err, fragment)

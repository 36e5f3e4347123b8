"""ONNX export around the graph: metadata, the batch axis, files, errors, missing packages and the CLI."""

import json
import sys

import numpy as np
import pytest
from onnx_helpers import require
from test_cli import assert_one_line_error, make_idx_dir

import xpnet
from xpnet import layers as L
from xpnet import models
from xpnet.cli.main import main
from xpnet.errors import ExportError
from xpnet.models.base import Model
from xpnet.serialization import content_sha256


@pytest.fixture
def onnx():
    require("onnxruntime")
    return require("onnx")


class Mystery(L.Layer):
    """A layer the exporter has never heard of."""

    def forward(self, x, train=False):
        return x * 2


def test_metadata_opset_and_dynamic_batch(onnx, tmp_path):
    model = models.ResNet(widths=(4, 8, 8))
    model.save(tmp_path / "m.npz")
    model.to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["xpnet.arch"] == "resnet" and json.loads(props["xpnet.config"]) == model.config
    assert props["xpnet.version"] == xpnet.__version__ and props["xpnet.dtype"] == "float32"
    with np.load(tmp_path / "m.npz") as z:  # the same content hash as the .npz the weights came from
        assert props["xpnet.sha256"] == json.loads(str(z["__meta__"]))["sha256"] == content_sha256(model)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", xpnet.onnx.OPSET)]
    assert proto.producer_name == "xpnet"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert [i.name for i in proto.graph.initializer][:2] == ["stem_conv.W", "stem_conv.b"]  # xpnet's names


def test_fixed_batch(onnx, tmp_path, rng):
    model = models.MLP(input_size=6, hidden_size_list=[5])
    model.to_onnx(tmp_path / "m.onnx", batch=4)
    runner = xpnet.onnx.OnnxModel(tmp_path / "m.onnx")
    assert runner.input_shape == (4, 6)
    x = rng.random((4, 6), dtype=np.float32)
    np.testing.assert_allclose(runner.predict(x), model.predict(x), rtol=0, atol=1e-6)
    with pytest.raises(xpnet.errors.ShapeError, match=r"expected input of shape \(4, 6\), got \(3, 6\)"):
        runner.predict(x[:3])
    with pytest.raises(ValueError, match="batch must be a positive int"):
        model.to_onnx(tmp_path / "n.onnx", batch=0)


def test_unknown_layer_is_named_by_its_dotted_path(onnx, tmp_path):
    net = L.Sequential(("conv", L.Conv2D(1, 2, 3, pad=1)),
                       ("block", L.Residual(L.Sequential(("odd", Mystery()), ("relu", L.ReLU())))))
    model = Model(net, L.SoftmaxCrossEntropy(), {}, input_shape=(1, 4, 4))
    (tmp_path / "m.onnx").write_bytes(b"kept")
    with pytest.raises(ExportError, match=r"layer 'block\.body\.odd' \(Mystery\).*knows .*Conv2D"):
        model.to_onnx(tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left behind


def test_subclass_needs_its_own_converter(onnx, tmp_path):
    class Doubled(L.ReLU):
        def forward(self, x, train=False):
            return super().forward(x, train) * 2

    model = Model(L.Sequential(Doubled()), L.SoftmaxCrossEntropy(), {}, input_shape=(3,))
    with pytest.raises(ExportError, match="'doubled1' \\(Doubled\\)"):
        model.to_onnx(tmp_path / "m.onnx")


def test_never_overwrites_a_file_xpnet_did_not_write(onnx, tmp_path):
    model = models.MLP(input_size=4, hidden_size_list=[3])
    foreign = tmp_path / "m.onnx"
    foreign.write_bytes(b"someone else's file")
    with pytest.raises(ExportError, match="not an ONNX file written by xpnet"):
        model.to_onnx(foreign)
    assert foreign.read_bytes() == b"someone else's file"
    other = tmp_path / "theirs.onnx"  # a valid ONNX file from another producer is kept too
    proto = model.to_onnx(tmp_path / "ours.onnx")
    proto.producer_name = "someone"
    other.write_bytes(proto.SerializeToString())
    with pytest.raises(ExportError):
        model.to_onnx(other)
    models.MLP(input_size=4, hidden_size_list=[3], seed=1).to_onnx(tmp_path / "ours.onnx")  # its own: replaced
    assert xpnet.onnx.OnnxModel(tmp_path / "ours.onnx").meta["xpnet.config"]["seed"] == 1


def test_without_onnx_one_line_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = models.MLP(input_size=4, hidden_size_list=[3])
    with pytest.raises(xpnet.onnx.OnnxUnavailableError, match=r'pip install "xpnet\[onnx\]"'):
        model.to_onnx(tmp_path / "m.onnx")
    model.save(tmp_path / "m.npz")
    code = main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")])
    assert_one_line_error(code, capsys.readouterr().err, "onnx", 'pip install "xpnet[onnx]"')
    (tmp_path / "x.onnx").write_bytes(b"")
    code = main(["eval", str(tmp_path / "x.onnx")])
    assert_one_line_error(code, capsys.readouterr().err, "onnxruntime", 'pip install "xpnet[onnx]"')
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_then_eval_compares_the_engines(onnx, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(data, n_train=10, n_test=50, size=12)
    model = models.SimpleConvNet(input_dim=(1, 12, 12), filter_num=4, hidden_size=8, output_size=3,
                                 weight_init_std="he")
    model.save(tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 0
    assert "opset 17, dynamic batch" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "m.onnx"), "--dataset", str(data), "--compare", str(tmp_path / "m.npz"),
                 "--batch-size", "16"]) == 0
    out = capsys.readouterr().out.splitlines()
    acc = float(out[1].split(": ")[1])
    assert out[1].startswith("test accuracy: ") and out[2] == f"xpnet on numpy: test accuracy {acc:.4f}"
    assert out[3].startswith("argmax agreement: 50/50; max |logit difference| ")
    models.SimpleConvNet(input_dim=(1, 12, 12), filter_num=4, hidden_size=8, output_size=3, seed=5).save(
        tmp_path / "other.npz")
    assert main(["eval", str(tmp_path / "m.onnx"), "--dataset", str(data), "--compare",
                 str(tmp_path / "other.npz")]) == 0
    assert "holds other weights" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragments", [
    (["eval", "{d}/m.onnx", "--dtype", "float16"], ["--dtype does not apply to an .onnx model"]),
    (["eval", "{d}/m.npz", "--compare", "{d}/m.npz"], ["--compare applies to an .onnx MODEL"]),
    (["eval", "{d}/missing.onnx"], ["missing.onnx: no such file"]),
    (["eval", "{d}/m.npz.onnx"], ["onnxruntime cannot load it"]),
    (["export", "{d}/m.npz", "{d}/m.npz"], ["exists and is not an ONNX file written by xpnet"]),
    (["export", "{d}/m.npz", "{d}/n.onnx", "--batch", "0"], ["--batch must be positive, got 0"]),
])
def test_cli_errors_are_one_line(onnx, args, fragments, tmp_path, capsys):
    models.MLP(input_size=4, hidden_size_list=[3]).save(tmp_path / "m.npz")
    (tmp_path / "m.npz.onnx").write_bytes((tmp_path / "m.npz").read_bytes())
    code = main([a.format(d=tmp_path) for a in args])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)


def test_compare_counts_agreement_and_the_largest_difference(onnx, tmp_path, rng):
    model = models.MLP(input_size=8, hidden_size_list=[6], output_size=4)
    model.to_onnx(tmp_path / "m.onnx")
    runner = xpnet.onnx.OnnxModel(tmp_path / "m.onnx")
    x = rng.random((50, 8), dtype=np.float32)
    t = model.predict(x).argmax(axis=1)  # the exported model scores 1.0 on these labels, another less
    same = xpnet.onnx.compare(runner, model, x, t, batch_size=7)
    assert same["n"] == same["argmax_agree"] == 50 and same["max_abs_diff"] < 1e-5
    assert same["accuracy_xpnet"] == model.accuracy(x, t) and same["accuracy_onnx"] == runner.accuracy(x, t)
    other = models.MLP(input_size=8, hidden_size_list=[6], output_size=4, seed=3)
    diff = xpnet.onnx.compare(runner, other, x, t, batch_size=7)
    want = np.abs(model.predict(x) - other.predict(x)).max()
    assert diff["argmax_agree"] < 50 and diff["accuracy_onnx"] == same["accuracy_onnx"]
    assert diff["accuracy_xpnet"] == other.accuracy(x, t) < same["accuracy_xpnet"] == 1.0
    assert "accuracy_xpnet" not in xpnet.onnx.compare(runner, model, x)
    np.testing.assert_allclose(diff["max_abs_diff"], want, rtol=1e-5)

"""Reliability: wrong inputs and hyperparameters fail early, naming what was expected and what came.

Behaviour on NaN/Inf (decided here): ``Model.predict`` does not look at values (a check would cost a
device sync per call), so NaN in gives NaN out; the Trainer stops on a non-finite training loss, naming
the step, and on a non-finite test loss, before the epoch's checkpoint is written.
"""

import json
import re

import numpy as np
import pytest
from reliability_helpers import assert_one_line_error, run_main, tiny_idx, train_args

from xpnet import backends, optim
from xpnet.cli.main import main
from xpnet.errors import DTypeError, ShapeError, TrainingError
from xpnet.layers import (
    Affine,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    Flatten,
    LocalResponseNormalization,
    MaxPool2D,
    MeanSquaredError,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from xpnet.models import MLP, AlexNet, DeepConvNet, SimpleConvNet
from xpnet.training import Trainer, load_checkpoint


def _named(layer, name):
    return Sequential((name, layer))[name]


def _tiny_mlp(**kw):
    return MLP(input_size=16, hidden_size_list=(8,), output_size=3, **kw)


def _tiny_set(n=12, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    return rng.random((n, 16), dtype=np.float32), rng.integers(0, classes, n)


# -- layers and models: shape and dtype ------------------------------------------------------------
@pytest.mark.parametrize("layer, name, shape, expected", [
    (AvgPool2D(2), "pool1", (2, 8, 8), "expected a 4-D (N, C, H, W) input"),
    (LocalResponseNormalization(), "norm1", (2, 8), "expected a 4-D (N, C, H, W) input"),
    (BatchNorm(4), "bn1", (2, 4, 3), "expected a 2-D or 4-D input"),
    (SoftmaxCrossEntropy(), "loss", (2, 3, 1), "expected a 2-D (N, classes) input"),
], ids=["avgpool", "lrn", "batchnorm-3d", "softmax-3d"])
def test_layer_wrong_rank_names_layer_expected_and_got(layer, name, shape, expected):
    layer = _named(layer, name)
    with pytest.raises(ShapeError) as exc:
        if isinstance(layer, SoftmaxCrossEntropy):
            layer.forward(np.zeros(shape, np.float32), np.zeros(2, np.int64))
        else:
            layer.forward(np.zeros(shape, np.float32), train=True)
    msg = str(exc.value)
    assert f"{type(layer).__name__} '{name}'" in msg and expected in msg and str(shape) in msg, msg


@pytest.mark.parametrize("make, shape", [
    (Sigmoid, (2, 3)), (Tanh, (2, 3)), (Flatten, (2, 3, 4)), (lambda: Dropout(0.5), (2, 3)),
    (lambda: BatchNorm(3), (2, 3)), (lambda: Affine(3, 2), (2, 3)), (lambda: MaxPool2D(2), (1, 1, 4, 4)),
    (lambda: AvgPool2D(2), (1, 1, 4, 4)), (LocalResponseNormalization, (1, 2, 4, 4)), (MeanSquaredError, (2, 3)),
], ids=["sigmoid", "tanh", "flatten", "dropout", "batchnorm", "affine", "maxpool", "avgpool", "lrn", "mse"])
def test_layer_integer_input_names_layer_and_dtype(make, shape):
    layer = _named(make(), "the_layer")
    x = np.zeros(shape, np.int32)
    with pytest.raises(DTypeError) as exc:
        if isinstance(layer, MeanSquaredError):
            layer.forward(x, np.zeros(shape))
        else:
            layer.forward(x, train=True)
    msg = str(exc.value)
    assert f"{type(layer).__name__} 'the_layer'" in msg and "floating-point" in msg and "int32" in msg, msg


@pytest.mark.parametrize("make, shape", [(lambda: Affine(3, 2), (2, 3)), (lambda: BatchNorm(3), (2, 3))],
                         ids=["affine", "batchnorm"])
def test_layer_float64_input_to_float32_parameters_names_both(make, shape):
    layer = _named(make(), "p")  # on the current backend; so is its input
    with pytest.raises(DTypeError) as exc:
        layer.forward(backends.current().asarray(np.zeros(shape, np.float64)))
    msg = str(exc.value)
    assert "'p'" in msg and "expected input dtype float32" in msg and "got float64" in msg, msg


@pytest.mark.parametrize("make, bad, expected", [
    (lambda: MLP(input_size=16, hidden_size_list=(8,), output_size=3), (2, 15), "(N, 16)"),
    (lambda: SimpleConvNet(input_dim=(1, 8, 8), filter_num=2, filter_size=3, hidden_size=4, output_size=3),
     (2, 1, 6, 6), "(N, 1, 8, 8)"),
    (lambda: DeepConvNet(), (2, 1, 14, 14), "(N, 1, 28, 28)"),
    (lambda: DeepConvNet(), (2, 784), "(N, 1, 28, 28)"),
    (lambda: AlexNet(input_dim=(3, 67, 67), output_size=7, hidden_size=16), (1, 1, 67, 67), "(N, 3, 67, 67)"),
], ids=["mlp", "simple_convnet", "deep_convnet-small", "deep_convnet-flat", "alexnet-channels"])
def test_model_wrong_input_shape_names_model_expected_and_got(make, bad, expected):
    model = make()
    with pytest.raises(ShapeError) as exc:
        model.predict(np.zeros(bad, np.float32))
    msg = str(exc.value)
    assert msg.startswith(type(model).__name__) and expected in msg and f"got shape {bad}" in msg, msg


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy on NaN/Inf: expected here
def test_predict_does_not_check_values_nan_and_inf_pass_through():
    model = _tiny_mlp()
    x, _ = _tiny_set(4)
    x[1, 3], x[2, 5] = np.nan, np.inf
    scores = model.predict(x)  # no error, no warning-as-error: predict stays a pure forward pass
    finite = np.isfinite(scores).all(axis=1)
    assert finite.tolist() == [True, False, False, True]


# -- the Trainer: NaN/Inf, labels, empty and mismatched sets ---------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy on NaN/Inf: expected here
def test_inf_input_stops_training_naming_the_exact_step(tmp_path):
    x, t = _tiny_set(12)
    bad = 7
    x[bad, 0] = np.inf
    trainer = Trainer(_tiny_mlp(), optim.SGD(lr=0.1), (x, t), _tiny_set(6, seed=1), epochs=2, batch_size=4,
                      seed=3, out_dir=str(tmp_path), progress=False, log_every=1)  # the exact step, also on a GPU
    order = np.random.Generator(np.random.PCG64(3)).permutation(12)  # the iterator's first epoch
    step = int(np.flatnonzero(order == bad)[0]) // 4 + 1
    with pytest.raises(TrainingError) as exc:
        trainer.fit()
    msg = str(exc.value)
    assert re.search(rf"non-finite loss \((nan|inf)\) at step {step} of epoch 1;", msg), msg
    assert "lower the learning rate or check the data" in msg
    assert "intact" not in msg and not (tmp_path / "checkpoint.npz").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy on NaN/Inf: expected here
def test_diverged_model_is_not_saved_over_the_last_good_checkpoint(tmp_path):
    """One update per epoch: the training loss is finite, the model after the update is not."""
    train, test = _tiny_set(12), _tiny_set(6, seed=1)
    Trainer(_tiny_mlp(), optim.SGD(lr=0.1), train, test, epochs=1, batch_size=12, out_dir=str(tmp_path),
            progress=False).fit()
    before = (tmp_path / "checkpoint.npz").read_bytes()
    trainer = Trainer(_tiny_mlp(), optim.SGD(lr=1e38), train, test, epochs=3, batch_size=12, out_dir=str(tmp_path),
                      progress=False).resume()
    with pytest.raises(TrainingError, match=r"non-finite test loss \((nan|inf)\) after epoch 2: the model diverged; "
                                            r"lower the learning rate; the last good checkpoint .* is intact"):
        trainer.fit()
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_diverging_run_via_cli_is_one_line_and_writes_no_model(tmp_path, capsys):
    data = tiny_idx(tmp_path / "data")
    code, _, err = run_main(capsys, *train_args(data, tmp_path / "run", "--optimizer", "sgd", "--lr", "1e38",
                                                "--batch-size", "10000"))
    assert_one_line_error(code, err, "non-finite test loss", "after epoch 1", "lower the learning rate")
    assert not (tmp_path / "run" / "model.npz").exists() and not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.parametrize("which, labels, got", [("training", [0, 1, 5], "[0, 5]"), ("test", [0, -1, 2], "[-1, 2]")])
def test_labels_out_of_range_are_refused_before_any_work(which, labels, got):
    train, test = _tiny_set(3), _tiny_set(3, seed=1)
    bad = (train[0], np.array(labels))
    with pytest.raises(ShapeError) as exc:
        Trainer(_tiny_mlp(), optim.SGD(), bad if which == "training" else train, bad if which == "test" else test,
                progress=False)
    msg = str(exc.value)
    assert f"Trainer: {which} labels must be in [0, 3) for a model with output_size 3" in msg and got in msg, msg


def test_empty_sets_and_batches_are_clear_errors():
    model, train = _tiny_mlp(), _tiny_set(4)
    empty = (np.zeros((0, 16), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ShapeError, match="Trainer: the test set is empty"):
        Trainer(model, optim.SGD(), train, empty, progress=False)
    with pytest.raises(ShapeError, match="Trainer: the training set is empty"):
        Trainer(model, optim.SGD(), empty, train, progress=False)
    with pytest.raises(ShapeError, match="Trainer: the test set has 4 inputs but 3 labels"):
        Trainer(model, optim.SGD(), train, (train[0], train[1][:3]), progress=False)
    with pytest.raises(ShapeError, match=r"accuracy: empty input"):
        model.accuracy(*empty)
    with pytest.raises(ShapeError, match=r"SoftmaxCrossEntropy .*at least one example, got shape \(0, 3\)"):
        SoftmaxCrossEntropy().forward(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ShapeError, match=r"MeanSquaredError .*at least one example, got shape \(0, 3\)"):
        MeanSquaredError().forward(np.zeros((0, 3), np.float32), np.zeros((0, 3)))


def test_test_inputs_of_another_shape_are_refused_before_training():
    train = _tiny_set(4)
    test = (np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ShapeError, match=r"test inputs have shape \(1, 4, 4\) per example but training inputs "
                                         r"have \(16,\)"):
        Trainer(_tiny_mlp(), optim.SGD(), train, test, progress=False)


def test_batch_larger_than_the_dataset_trains_one_partial_batch_per_epoch(tmp_path, capsys):
    data = tiny_idx(tmp_path / "data")
    out = tmp_path / "run"
    code, text, err = run_main(capsys, *train_args(data, out, "--batch-size", "10000", "--limit", "50", epochs=2))
    assert code == 0, err
    assert "50 images" in text and text.strip().splitlines()[-1].startswith("test accuracy: ")
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]
    _, opt, meta = load_checkpoint(out / "checkpoint.npz")
    assert opt["t"] == 2 and meta["epoch"] == 2  # one (partial) batch per epoch


# -- invalid hyperparameters -----------------------------------------------------------------------
@pytest.mark.parametrize("make, needle", [
    (lambda tr, te: Trainer(_tiny_mlp(), optim.SGD(), tr, te, epochs=0), "epochs must be >= 1, got 0"),
    (lambda tr, te: Trainer(_tiny_mlp(), optim.SGD(), tr, te, epochs=-2), "epochs must be >= 1, got -2"),
    (lambda tr, te: Trainer(_tiny_mlp(), optim.SGD(), tr, te, batch_size=0),
     "batch_size must be a positive integer, got 0"),
    (lambda tr, te: Trainer(_tiny_mlp(), optim.SGD(), tr, te, batch_size=2.5), "got 2.5"),
    (lambda tr, te: Trainer(_tiny_mlp(), optim.SGD(), tr, te, eval_batch_size=0),
     "eval_batch_size must be a positive integer, got 0"),
    (lambda tr, te: DeepConvNet(dropout_ratio=1.0),
     "DeepConvNet: dropout_ratio must be a finite number in [0, 1), got 1.0"),
    (lambda tr, te: MLP(use_dropout=True, dropout_ratio=-0.1),
     "MLP: dropout_ratio must be a finite number in [0, 1), got -0.1"),
    (lambda tr, te: MLP(activation="gelu"), "activation must be 'relu' or 'sigmoid', got 'gelu'"),
    (lambda tr, te: Conv2D(1, 2, 3, stride=0), "kernel_size and stride must be >= 1"),
    (lambda tr, te: MaxPool2D(0), "size and stride must be >= 1"),
], ids=["epochs-0", "epochs-neg", "batch-0", "batch-float", "eval-batch-0", "dropout-1", "dropout-neg",
        "activation", "conv-stride", "pool-size"])
def test_invalid_hyperparameters_via_the_api(make, needle):
    with pytest.raises((ValueError, TypeError)) as exc:
        make(_tiny_set(4), _tiny_set(2, seed=1))
    assert needle in str(exc.value)


@pytest.mark.parametrize("extra, fragments", [
    (["--weight-decay", "-1"], ["weight_decay must be a number >= 0.0, got -1.0"]),
    (["--warmup-epochs", "-1"], ["--warmup-epochs must be a finite number >= 0, got -1.0"]),
    (["--lr", "nan"], ["--lr must be positive, got nan"]),
    (["--lr", "inf"], ["--lr must be finite, got inf"]),
    (["--lr", "-0.5"], ["--lr must be positive, got -0.5"]),
    (["--batch-size", "0"], ["--batch-size must be positive, got 0"]),
    (["--epochs", "-3"], ["--epochs must be positive, got -3"]),
    (["--limit", "0"], ["--limit must be >= 1, got 0"]),
    (["--epochs", "abc"], ["argument --epochs: invalid int value: 'abc'", "xpnet train --help"]),
    (["--schedule", "linear"], ["argument --schedule: invalid choice: 'linear'"]),
], ids=["weight-decay", "warmup", "lr-nan", "lr-inf", "lr-neg", "batch-0", "epochs-neg", "limit-0", "epochs-abc",
        "schedule"])
def test_invalid_hyperparameters_via_the_cli_are_one_line(tmp_path, capsys, extra, fragments):
    data = tiny_idx(tmp_path / "data")
    try:
        code, _, err = run_main(capsys, *train_args(data, tmp_path / "run", *extra))
    except SystemExit as e:  # argparse errors exit through SystemExit (status 2)
        code, err = e.code, capsys.readouterr().err
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_eval_batch_size_zero_is_refused_before_loading_anything(tmp_path, capsys):
    code, _, err = run_main(capsys, "eval", tmp_path / "missing.npz", "--batch-size", "0")
    assert_one_line_error(code, err, "--batch-size must be positive, got 0")


# -- every argument and model argument validated, naming it ----------------------------------------------
@pytest.mark.parametrize("extra, fragments", [
    (["--seed", "-1"], ["--seed must be >= 0, got -1"]),
    (["--model-arg", "hidden_size_list=abc"], ["--model-arg: MLP: hidden_size_list must be a list of integers",
                                               "'abc'"]),
    (["--model-arg", "hidden_size_list=[0]"], ["hidden_size_list must be a list of integers in [1,", "[0]"]),
    (["--model-arg", "hidden_size_list=[3.5]"], ["hidden_size_list", "[3.5]"]),
    (["--model-arg", "dropout_ratio=Infinity"], ["MLP: dropout_ratio must be a finite number", "inf"]),
    (["--model-arg", "use_dropout=yes"], ["MLP: use_dropout must be true or false, got 'yes'"]),
    (["--model", "resnet", "--model-arg", "blocks=abc"], ["ResNet: blocks must be a list of integers, got 'abc'"]),
    (["--model", "simple_convnet", "--model-arg", "stride=0"], ["SimpleConvNet: stride must be an integer", "0"]),
    (["--model", "vgg16", "--model-arg", "width=Infinity"], ["VGG16: width must be a finite number", "inf"]),
    (["--model", "simple_convnet", "--augment", "rotate=1e308"], ["--augment 'rotate=1e308'",
                                                                  "degrees must be a number in [0, 180]"]),
    (["--model", "simple_convnet", "--augment", "shift=inf"], ["translate must be a number finite and >= 0"]),
    (["--weight-decay", "inf"], ["weight_decay must be a number >= 0.0, got inf"]),
    (["--warmup-epochs", "inf"], ["--warmup-epochs must be a finite number >= 0, got inf"]),
], ids=["seed", "hidden-abc", "hidden-0", "hidden-3.5", "dropout-inf", "flag", "blocks-abc", "stride-0",
        "width-inf", "rotate-1e308", "shift-inf", "weight-decay-inf", "warmup-inf"])
def test_bad_arguments_are_one_line_naming_them_before_any_data(tmp_path, capsys, extra, fragments):
    code, _, err = run_main(capsys, *train_args(tmp_path / "no-such-data", tmp_path / "run", *extra))
    assert_one_line_error(code, err, *fragments)  # the missing dataset was never reached
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("make, error, needle", [
    (lambda: optim.Adam(lr=float("inf")), ValueError, "lr must be a number > 0.0, got inf"),
    (lambda: optim.SGD(lr=float("nan")), ValueError, "got nan"),
    (lambda: optim.Adam(weight_decay=float("inf")), ValueError, "weight_decay must be a number >= 0.0, got inf"),
    (lambda: Conv2D(1, -2, 3), ValueError, "Conv2D: out_channels must be an integer in [1,"),
    (lambda: Affine(3, 0), ValueError, "Affine: out_features must be an integer in [1,"),
    (lambda: MLP(input_size=4).predict(np.zeros((0, 4), np.float32)), ShapeError,
     "MLP: expected a batch of at least one example, got shape (0, 4)"),
    (lambda: MLP(input_size=4).backward(), RuntimeError, "MLP.backward: no loss to back-propagate"),
    (lambda: SimpleConvNet(input_dim=(1, 4, 4)), ValueError, "input_dim [1, 4, 4] is too small for filter_size 5"),
], ids=["adam-lr-inf", "sgd-lr-nan", "weight-decay-inf", "conv-negative", "affine-zero", "predict-empty",
        "backward-first", "input-too-small"])
def test_bad_api_arguments_raise_naming_the_value(make, error, needle):
    with pytest.raises(error) as exc:
        make()
    assert needle in str(exc.value)


def test_a_gradient_that_would_broadcast_is_refused_by_every_optimizer():
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"):
        opt = optim.get(name, lr=0.1)
        params = {"fc.W": np.zeros((3, 4), np.float32)}
        with pytest.raises(ShapeError, match=r"the gradient of 'fc.W' has shape \(4,\), the parameter \(3, 4\)"):
            opt.step(params, {"fc.W": np.ones(4, np.float32)})
        assert not params["fc.W"].any(), name  # nothing was updated


# -- labels against the classes ----------------------------------------------------------------------------
def _labelled_idx(directory, train_labels, test_labels):
    from test_cli import write_idx

    directory.mkdir(parents=True, exist_ok=True)
    for prefix, t in (("train", train_labels), ("t10k", test_labels)):
        t = np.asarray(t, np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", np.zeros((len(t), 12, 12), np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", t)
    return directory


@pytest.mark.parametrize("train_labels, test_labels, fragments", [
    ([0, 1, 2] * 20 + [255], [0, 1, 2], ["train labels go up to 255", "never occur (e.g. 3, 4, 5"]),
    ([0, 1, 2] * 2000 + [3], [0, 1, 2], ["train label 3 occurs 1 time(s) against a mean of 1500", "stray label"]),
    ([0, 1, 2] * 20, [0, 1, 3], ["t10k labels span 0..3, outside the training labels' classes 0..2"]),
], ids=["label-255", "stray-label", "test-label-beyond"])
def test_dataset_labels_outside_the_classes_are_refused(tmp_path, capsys, train_labels, test_labels, fragments):
    data = _labelled_idx(tmp_path / "data", train_labels, test_labels)
    code, _, err = run_main(capsys, *train_args(data, tmp_path / "run"))
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "run").exists()


def test_eval_labels_outside_the_models_classes_are_refused(tmp_path, capsys):
    data = tiny_idx(tmp_path / "data")  # 3 classes
    assert main(train_args(data, tmp_path / "run")) == 0
    five = _labelled_idx(tmp_path / "five", [0, 1, 2, 3, 4] * 4, [0, 1, 2, 3, 4])
    capsys.readouterr()
    for command in (["eval", tmp_path / "run" / "model.npz"], ["ensemble", tmp_path / "run" / "model.npz"]):
        code, _, err = run_main(capsys, *command, "--dataset", five)
        assert_one_line_error(code, err, "test labels span 0..4, outside the", "classes 0..2")


def test_a_model_too_large_to_build_says_so_not_to_lower_the_batch_size(tmp_path, capsys):
    data = tiny_idx(tmp_path / "data")
    code, _, err = run_main(capsys, *train_args(data, tmp_path / "run", "--model-arg",
                                                "hidden_size_list=[1, 16777216, 16777216]"))  # 2.8e14 weights
    assert_one_line_error(code, err, "out of memory building the mlp model", "hidden_size_list=[1, 16777216",
                          "choose smaller --model-arg values")
    assert "--batch-size" not in err

"""Model files, the book's parameter pickle and the restricted unpickler."""

import pickle

import numpy as np
import pytest
from tolerance import assert_close

import xpnet
from xpnet.book import load_book_params
from xpnet.errors import FileFormatError, UnsafePickleError
from xpnet.models import MLP, DeepConvNet
from xpnet.serialization import load_into


def test_save_load_round_trip(tmp_path, backend, rng):
    model = DeepConvNet(seed=3)
    path = tmp_path / "m.npz"
    model.save(path)
    again = xpnet.load(path)
    assert type(again) is DeepConvNet and again.config == model.config
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    assert np.array_equal(backend.asnumpy(model.predict(x)), backend.asnumpy(again.predict(x)))


def test_truncated_and_corrupted_files_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    DeepConvNet().save(path)
    data = path.read_bytes()
    (tmp_path / "short.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated or corrupted"):
        xpnet.load(tmp_path / "short.npz")
    with pytest.raises(FileFormatError, match="no such file"):
        xpnet.load(tmp_path / "missing.npz")


def test_content_hash_catches_a_changed_parameter(tmp_path):
    path = tmp_path / "m.npz"
    DeepConvNet().save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["conv1.W"] = arrays["conv1.W"] + 1
    np.savez(path, **arrays)
    with pytest.raises(FileFormatError, match="content hash mismatch"):
        xpnet.load(path)


def test_other_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "mlp.npz"
    MLP().save(path)
    with pytest.raises(FileFormatError, match="holds a 'mlp' model, not 'deep_convnet'"):
        load_into(DeepConvNet(), path)


def test_newer_format_version_is_refused(tmp_path):
    from xpnet import serialization

    path = tmp_path / "m.npz"
    model = DeepConvNet()
    serialization.write_npz(path, model.state_dict(), {**serialization.model_meta(model), "format_version": 99})
    with pytest.raises(FileFormatError, match="newer than this xpnet reads"):
        xpnet.load(path)


def test_the_model_l2_option_is_refused_for_the_optimizers_but_old_files_holding_it_load(tmp_path, rng):
    from xpnet import serialization

    with pytest.raises(ValueError, match=r"weight_decay_lambda must be 0, got 0.1; .* pass weight_decay=0.1 to it"):
        MLP(input_size=4, hidden_size_list=(3,), output_size=2, weight_decay_lambda=0.1)
    model = MLP(input_size=4, hidden_size_list=(3,), output_size=2, seed=1)
    meta = serialization.model_meta(model)
    path = tmp_path / "old.npz"  # as an older xpnet wrote an MLP built with the book's L2 penalty
    old_config = {**meta["config"], "weight_decay_lambda": 0.1}
    serialization.write_npz(path, model.state_dict(), {**meta, "config": old_config})
    x = rng.random((5, 4), dtype=np.float32)
    np.testing.assert_array_equal(xpnet.load(path).predict(x), model.predict(x))


# -- the book's parameters ------------------------------------------------------------------------------
def book_params(rng):
    shapes = {"W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3), "W4": (32, 32, 3, 3),
              "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3), "W7": (1024, 50), "W8": (50, 10)}
    params = {}
    for i in range(1, 9):
        W = shapes[f"W{i}"]
        params[f"W{i}"] = rng.standard_normal(W) * np.sqrt(2.0 / np.prod(W[1:] if i <= 6 else W[:1]))
        params[f"b{i}"] = rng.standard_normal(W[0] if i <= 6 else W[1]) * 0.1
    return params


def book_predict(p, x):
    """The book's DeepConvNet inference, written independently: naive conv, pool, (1 - 0.5) dropout."""

    def conv(x, W, b, pad):
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        N, C, H, Wd = x.shape
        FN, _, KH, KW = W.shape
        OH, OW = H - KH + 1, Wd - KW + 1
        out = np.zeros((N, FN, OH, OW))
        for i in range(KH):
            for j in range(KW):
                out += np.einsum("nchw,fc->nfhw", x[:, :, i : i + OH, j : j + OW], W[:, :, i, j])
        return out + b[None, :, None, None]

    def pool(x):
        N, C, H, W = x.shape
        return x.reshape(N, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))

    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    h = x
    for k, pad in ((1, 1), (2, 1), (3, 1), (4, 2), (5, 1), (6, 1)):
        h = relu(conv(h, p[f"W{k}"], p[f"b{k}"], pad))
        if k % 2 == 0:
            h = pool(h)
    h = relu(h.reshape(len(h), -1) @ p["W7"] + p["b7"]) * 0.5
    return (h @ p["W8"] + p["b8"]) * 0.5


def test_book_params_give_the_books_predictions(tmp_path, backend, rng):
    params = book_params(rng)
    path = tmp_path / "deep_convnet_params.pkl"
    with open(path, "wb") as f:
        pickle.dump(params, f)
    model = load_book_params(path, dtype="float64")
    x = rng.random((5, 1, 28, 28))
    want = book_predict(params, x)
    # float64 on both sides: the products along the network (C*KH*KW per conv, the input size per affine)
    terms = sum(p[0].size if p.ndim == 4 else p.shape[0] for k, p in params.items() if k.startswith("W"))
    assert_close(backend.asnumpy(model.predict(x)), want, terms=terms, scale=np.abs(want).max() + 1)


def test_book_params_with_a_wrong_shape_are_refused(tmp_path, rng):
    params = book_params(rng)
    params["W7"] = params["W7"][:10]
    path = tmp_path / "p.pkl"
    with open(path, "wb") as f:
        pickle.dump(params, f)
    with pytest.raises(FileFormatError, match=r"'W7' should be an array of shape \(1024, 50\)"):
        load_book_params(path)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_malicious_book_params_never_run(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"W1": _Evil(target)}, f)
    with pytest.raises(UnsafePickleError, match="system"):
        load_book_params(path)
    assert not target.exists()

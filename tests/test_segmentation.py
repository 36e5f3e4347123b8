"""The MNIST segmentation canvases, the segmentation metrics, the FCN and the picture writer."""

import numpy as np
import pytest

import xpnet
from xpnet import imagegrid, metrics, optim
from xpnet.datasets import mnist_segmentation as seg
from xpnet.errors import ShapeError
from xpnet.models import FCN


def _fake_digits(n, seed=0):
    """Synthetic 28x28 'digits': a solid block of a random size (ink 1.0) with a faint rim (0.3)."""
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 28, 28), np.float32)
    for k in range(n):
        h, w = rng.integers(6, 20, size=2)
        r, c = rng.integers(1, 27 - h), rng.integers(1, 27 - w)
        digits[k, r - 1:r + h + 1, c - 1:c + w + 1] = 0.3
        digits[k, r:r + h, c:c + w] = 1.0
    return digits, rng.integers(0, 10, n)


def test_compose_labels_ink_pixels_with_their_digit_and_is_reproducible():
    digits, labels = _fake_digits(50)
    x, t = seg.compose(digits, labels, 40, seed=3)
    assert x.shape == (40, 1, 64, 64) and x.dtype == np.float32 and t.shape == (40, 64, 64)
    assert ((t == seg.BACKGROUND) == (x[:, 0] < seg.INK)).all()  # ink >= 0.5 exactly where a digit is labelled
    counts = [len(set(np.unique(ti)) - {seg.BACKGROUND}) for ti in t]  # distinct digit classes per canvas
    assert 1 <= min(counts) and max(counts) <= 3 and len(set(counts)) > 1
    x2, t2 = seg.compose(digits, labels, 40, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(t, t2)
    assert not np.array_equal(seg.compose(digits, labels, 40, seed=4)[1], t)


def test_compose_places_each_digit_whole_and_apart():
    digit = np.zeros((1, 28, 28), np.float32)
    digit[0, 4:24, 10:18] = 1.0  # 20 x 8 ink box: 160 pixels
    x, t = seg.compose(np.repeat(digit, 3, 0), np.array([2, 5, 7]), 30, max_digits=3, seed=0)
    for ti in t:
        for cls in np.unique(ti):
            if cls != seg.BACKGROUND:
                assert (ti == cls).sum() % 160 == 0  # whole digits, never cut by another one on top
    assert ((t != seg.BACKGROUND).sum(axis=(1, 2)) // 160).max() == 3


def test_load_mnist_segmentation_uses_each_mnist_split(monkeypatch):
    train, test = _fake_digits(30, 1), _fake_digits(30, 2)
    test[1][:] = 4  # only the test split has the digit 4 ... and only 4s
    train[1][train[1] == 4] = 5
    monkeypatch.setattr(seg, "load_mnist", lambda flatten: ((train[0][:, None], train[1]), (test[0][:, None],
                                                                                             test[1])))
    (x_tr, t_tr), (x_te, t_te) = seg.load_mnist_segmentation(20, 10, seed=0)
    assert len(x_tr) == 20 and len(x_te) == 10
    assert 4 not in np.unique(t_tr) and set(np.unique(t_te)) == {4, seg.BACKGROUND}


def test_confusion_matrix_iou_and_pixel_accuracy_by_hand():
    t = np.array([[0, 0, 1, 1], [2, 2, 2, 9]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 2]])
    cm = metrics.confusion_matrix(pred, t, 3, ignore_index=9)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 2 / (3 + 2 - 2) = 2/3
    np.testing.assert_allclose(metrics.iou_per_class(cm), [1 / 3, 2 / 3, 2 / 3])
    assert metrics.mean_iou(cm) == pytest.approx(5 / 9)
    assert metrics.pixel_accuracy(cm) == pytest.approx(5 / 7)
    # a class absent from labels and predictions does not count in the mean
    assert metrics.mean_iou(metrics.confusion_matrix(t[:1], t[:1], 5)) == 1.0
    with pytest.raises(ShapeError, match="differ in size"):
        metrics.confusion_matrix(pred[:1], t, 3)


def test_classifier_score_confidence_and_entropy():
    logits = np.zeros((8, 10))
    logits[np.arange(8), [0, 1, 2, 3, 0, 1, 2, 3]] = [10, 10, 10, 10, 10, 3, 1, 1]
    score = metrics.classifier_score(lambda x: logits[x[:, 0].astype(int)], np.arange(8.0)[:, None],
                                     batch_size=3)
    # 5 rows have softmax max e^10 / (e^10 + 9) > 0.99; one e^3 / (e^3 + 9) = 0.69; two e / (e + 9) = 0.23
    assert score["confident"] == 5 / 8
    assert score["histogram"] == [2, 2, 2, 2, 0, 0, 0, 0, 0, 0]
    assert score["entropy"] == pytest.approx(np.log(4))


def test_fcn_shapes_save_load_and_scores(backend, tmp_path, rng):
    model = FCN(input_dim=(1, 16, 24), num_classes=4, widths=(2, 3, 4, 4))
    x = rng.random((3, 1, 16, 24)).astype(np.float32)
    y = model.predict(x)
    assert y.shape == (3, 4, 16, 24) and y.dtype == np.float32
    path = tmp_path / "fcn.npz"
    model.save(path)
    again = xpnet.load(path)
    np.testing.assert_array_equal(backend.asnumpy(again.predict(x)), backend.asnumpy(y))
    pred = model.segment(x)
    s = model.scores(x, pred)  # scored against its own predictions: perfect
    assert s["mean_iou"] == 1.0 and s["pixel_accuracy"] == 1.0
    with pytest.raises(ValueError, match="multiples of 8"):
        FCN(input_dim=(1, 20, 20))


@pytest.mark.slow
def test_fcn_learns_to_segment_synthetic_canvases(backend):
    """A short run on block 'digits' whose class shows in their size: the loss falls and IoU beats chance."""
    digits, labels = _fake_digits(200, 5)
    labels = (digits.sum(axis=(1, 2)) > 150).astype(int)  # big or small block: two classes + background
    x, t = seg.compose(digits, labels, 96, canvas=32, max_digits=2, seed=1)
    t[t == seg.BACKGROUND] = 2
    model = FCN(input_dim=(1, 32, 32), num_classes=3, widths=(8, 8, 16, 16), seed=0)
    opt = optim.Adam(lr=0.01)
    first = None
    for _ in range(6):
        for i in range(0, 96, 16):
            loss = float(model.loss(x[i:i + 16], t[i:i + 16]))
            model.backward()
            opt.step(model.params, model.grads)
            first = loss if first is None else first
    s = model.scores(x, t)
    # always predicting background gives mean IoU ~0.3 (one class right, two at 0); measured 0.75 here
    assert loss < first / 3 and s["mean_iou"] > 0.6, (first, loss, s)


def test_save_segmentation_and_grid_write_pngs(tmp_path, rng):
    x = rng.random((4, 1, 8, 8)).astype(np.float32)
    t = rng.integers(0, 11, (4, 8, 8))
    path = tmp_path / "seg.png"
    imagegrid.save_segmentation(x, t, t, path, zoom=2)
    from matplotlib import image as mpl_image

    img = mpl_image.imread(path)
    assert img.shape[:2] == (2 * (4 * 10 - 2), 2 * (3 * 10 - 2))  # 4 rows and 3 columns of 8 + 2 px gaps
    np.testing.assert_allclose(img[0, 2 * 10, :3], imagegrid.PALETTE[t[0, 0, 0]], atol=1 / 255)
    imagegrid.save_grid(x, tmp_path / "grid.png", cols=2)
    assert mpl_image.imread(tmp_path / "grid.png").shape[:2] == (18, 18)
    with pytest.raises(ValueError, match="must end in .png"):
        imagegrid.save_grid(x, tmp_path / "grid.jpg", cols=2)
    with pytest.raises(ShapeError, match=r"classes must be in \[0, 11\)"):
        imagegrid.colorize(np.array([[11]]))

"""Scores beyond accuracy: segmentation (confusion matrix, mean IoU, pixel accuracy) and generated images
judged by a classifier."""

import numpy as np

from xpnet import backends
from xpnet.errors import ShapeError


def confusion_matrix(pred, t, num_classes, ignore_index=None):
    """(K, K) int64 counts: row = true class, column = predicted class, over pixels not ``ignore_index``.

    Args:
        pred, t: integer arrays of one shape (any backend; read to the host).
    """
    pred, t = (np.asarray(backends.of(a).asnumpy(a)).reshape(-1).astype(np.int64) for a in (pred, t))
    if pred.shape != t.shape:
        raise ShapeError(f"confusion_matrix: predictions {pred.shape} and labels {t.shape} differ in size")
    keep = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
    pred, t = pred[keep], t[keep]
    if t.size and (t.min() < 0 or t.max() >= num_classes or pred.min() < 0 or pred.max() >= num_classes):
        raise ShapeError(f"confusion_matrix: classes must be in [0, {num_classes})")
    return np.bincount(t * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_per_class(cm):
    """Intersection over union per class, TP / (TP + FP + FN); NaN for a class absent from both sides."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm):
    """Mean of :func:`iou_per_class` over the classes that occur (in the labels or the predictions)."""
    return float(np.nanmean(iou_per_class(cm)))


def pixel_accuracy(cm):
    """Share of counted pixels predicted as their label."""
    cm = np.asarray(cm)
    return float(np.trace(cm) / max(cm.sum(), 1))


def segment(predict, x, batch_size=50):
    """Per-pixel classes ``argmax`` over the channels of ``predict(batch)``, as one NumPy (N, H, W) array."""
    out = []
    for i in range(0, len(x), batch_size):
        y = predict(x[i:i + batch_size])
        out.append(backends.of(y).asnumpy(y.argmax(axis=1)))
    return np.concatenate(out)


def classifier_score(predict, images, threshold=0.9, num_classes=10, batch_size=500):
    """How a trained classifier sees generated images: its confidence and the spread of its classes.

    Args:
        predict: callable batch -> (n, num_classes) scores before softmax (``model.predict``).
        images: (N, ...) inputs in the classifier's range. threshold: confidence that counts as sure.

    Returns:
        dict: ``confident`` (share with max softmax probability >= threshold), ``entropy`` (nats, of the
        histogram of argmax classes; log(num_classes) when all classes are equally frequent),
        ``histogram`` (counts per class, a list).
    """
    if len(images) == 0:
        raise ShapeError("classifier_score: no images")
    top, cls = [], []
    for i in range(0, len(images), batch_size):
        y = predict(images[i:i + batch_size])
        y = np.asarray(backends.of(y).asnumpy(y), np.float64)
        p = np.exp(y - y.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        top.append(p.max(axis=1))
        cls.append(p.argmax(axis=1))
    top, cls = np.concatenate(top), np.concatenate(cls)
    hist = np.bincount(cls, minlength=num_classes)
    freq = hist[hist > 0] / hist.sum()
    return {"confident": float((top >= threshold).mean()), "entropy": float(-(freq * np.log(freq)).sum()),
            "histogram": hist.tolist()}

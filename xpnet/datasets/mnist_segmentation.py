"""A segmentation data set made from MNIST: one to three digits on a canvas, a class label per pixel.

No download beyond MNIST itself: the images are composed from MNIST's training digits for the training
set and from its test digits for the test set, reproducibly from a seed.
"""

import numpy as np

from xpnet.datasets.mnist import NUM_CLASSES, load_mnist

BACKGROUND = NUM_CLASSES  # digits keep their own class 0-9; the background is class 10
SEG_CLASSES = NUM_CLASSES + 1
INK = 0.5  # a pixel belongs to a digit where the digit's intensity is at least this


def compose(digits, labels, n, canvas=64, max_digits=3, seed=0):
    """Place 1 to ``max_digits`` digits per canvas where their ink boxes do not overlap.

    Args:
        digits: (M, 28, 28) or (M, 1, 28, 28) float images in [0, 1]. labels: (M,) classes 0-9.
        n: images to make. canvas: side of the square canvas. max_digits: at most this many digits.
        seed: makes the set reproducible (digits, counts and positions).

    Returns:
        ``(x (n, 1, canvas, canvas) float32 in [0, 1], t (n, canvas, canvas) int64)``: pixels where a
        digit's intensity is >= 0.5 get its class, all others :data:`BACKGROUND` (10).
    """
    digits = np.asarray(digits, np.float32).reshape(len(digits), 28, 28)
    if canvas < 28:
        raise ValueError(f"compose: canvas must be at least 28 (one digit), got {canvas}")
    if not 1 <= max_digits:
        raise ValueError(f"compose: max_digits must be >= 1, got {max_digits}")
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, canvas, canvas), np.float32)
    t = np.full((n, canvas, canvas), BACKGROUND, np.int64)
    for i in range(n):
        boxes = []
        for _ in range(int(rng.integers(1, max_digits + 1))):
            k = int(rng.integers(len(digits)))
            _place(digits[k], int(labels[k]), x[i, 0], t[i], boxes, rng)
    return x, t


def _place(digit, label, img, lab, boxes, rng, tries=20):
    """Paste ``digit`` at a random spot whose ink box overlaps none of ``boxes``; skip it if none is found."""
    rows, cols = np.nonzero(digit >= INK)
    if not len(rows):
        return
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    size = img.shape[0]
    for _ in range(tries):
        top, left = int(rng.integers(size - 28 + 1)), int(rng.integers(size - 28 + 1))
        box = (top + r0, top + r1, left + c0, left + c1)
        if all(box[1] <= b[0] or b[1] <= box[0] or box[3] <= b[2] or b[3] <= box[2] for b in boxes):
            boxes.append(box)
            window = img[top:top + 28, left:left + 28]
            np.maximum(window, digit, out=window)
            lab[top:top + 28, left:left + 28][digit >= INK] = label
            return


def load_mnist_segmentation(n_train=10000, n_test=1000, canvas=64, max_digits=3, seed=0):
    """The composed segmentation set: training canvases from MNIST's training digits, test from its test digits.

    Returns:
        ``((x_train, t_train), (x_test, t_test))`` as :func:`compose` returns them; 11 classes
        (:data:`SEG_CLASSES`), 10 being the background.
    """
    (x_tr, t_tr), (x_te, t_te) = load_mnist(flatten=False)
    train = compose(x_tr, t_tr, n_train, canvas, max_digits, seed)
    test = compose(x_te, t_te, n_test, canvas, max_digits, seed + 1)
    return train, test

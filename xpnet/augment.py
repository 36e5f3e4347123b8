"""Data augmentation, vectorised over a batch on the batch's own device (GPU batches stay on the GPU).

Every transform draws its random parameters per image from the generator it is given and works on
(N, C, H, W) floating arrays of either backend with the same code. :class:`Augment` chains them, owns the
seeded generator, and saves/restores its state so a resumed run continues the same random stream.

Example:
    >>> aug = Augment(RandomAffine(degrees=10, translate=2, scale=0.1), seed=0)
    >>> xb = aug(xb)  # (N, 1, 28, 28) -> (N, 1, 28, 28), same dtype and device
"""

import math

import numpy as np

from xpnet import backends
from xpnet.checks import in_range
from xpnet.errors import DTypeError, ShapeError
from xpnet.utils import LazyGenerator


def _uniform(rng, n, low, high, dtype):
    """n draws from U[low, high) as a (n,) array of ``dtype``."""
    return rng.random((n,), dtype=dtype) * dtype.type(high - low) + dtype.type(low)


def _gather(x, sy, sx):
    """Sample ``x`` (N, C, H, W) at integer source rows/cols ``sy, sx`` (N, OH, OW); outside is 0."""
    xp = backends.of(x).xp
    N, C, H, W = x.shape
    valid = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
    flat = xp.clip(sy, 0, H - 1) * W + xp.clip(sx, 0, W - 1)  # (N, OH, OW)
    OH, OW = flat.shape[1:]
    picked = x.reshape(N, C, H * W)[xp.arange(N)[:, None, None], xp.arange(C)[None, :, None],
                                    flat.reshape(N, 1, OH * OW)]
    return picked.reshape(N, C, OH, OW) * valid[:, None].astype(x.dtype)


def warp_affine(x, matrix, offset):
    """Bilinear resampling: out[n, :, i, j] = x[n, :, y, x] at (y, x) = matrix[n] @ (i, j) + offset[n].

    Args:
        x: (N, C, H, W) floating images.
        matrix: (N, 2, 2) maps output (row, col) to source (row, col). offset: (N, 2).

    Returns:
        (N, C, H, W) in x's dtype; source points outside the image read 0.
    """
    xp = backends.of(x).xp
    N, C, H, W = x.shape
    i = xp.arange(H, dtype=x.dtype)[None, :, None]
    j = xp.arange(W, dtype=x.dtype)[None, None, :]
    m = matrix.astype(x.dtype)[:, :, :, None, None]
    o = offset.astype(x.dtype)[:, :, None, None]
    sy = m[:, 0, 0] * i + m[:, 0, 1] * j + o[:, 0]
    sx = m[:, 1, 0] * i + m[:, 1, 1] * j + o[:, 1]
    y0, x0 = xp.floor(sy), xp.floor(sx)
    wy, wx = (sy - y0)[:, None], (sx - x0)[:, None]
    y0, x0 = y0.astype(xp.int64), x0.astype(xp.int64)
    top = _gather(x, y0, x0) * (1 - wx) + _gather(x, y0, x0 + 1) * wx
    bottom = _gather(x, y0 + 1, x0) * (1 - wx) + _gather(x, y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


class RandomAffine:
    """Random rotation, scale and shift about the image centre, one bilinear resampling for all three.

    Args:
        degrees: rotation angle drawn from U[-degrees, degrees].
        translate: shift in pixels along each axis, drawn from U[-translate, translate].
        scale: zoom factor drawn from U[1 - scale, 1 + scale] (> 1 enlarges the digit).

    Shapes:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, degrees=0.0, translate=0.0, scale=0.0):
        _check("RandomAffine", high=180.0, closed=True, degrees=degrees)
        _check("RandomAffine", translate=translate)
        _check("RandomAffine", high=1.0, scale=scale)
        self.degrees, self.translate, self.scale = float(degrees), float(translate), float(scale)

    def __repr__(self):
        return f"RandomAffine(degrees={self.degrees:g}, translate={self.translate:g}, scale={self.scale:g})"

    def __call__(self, x, rng):
        xp = backends.of(x).xp
        N, _, H, W = x.shape
        f = np.dtype(np.float32)
        angle = _uniform(rng, N, -self.degrees, self.degrees, f) * f.type(math.pi / 180)
        zoom = _uniform(rng, N, 1 - self.scale, 1 + self.scale, f)
        shift = _uniform(rng, 2 * N, -self.translate, self.translate, f).reshape(N, 2)
        cos, sin = xp.cos(angle) / zoom, xp.sin(angle) / zoom
        # inverse map: source = R(-angle) / zoom @ (out - centre - shift) + centre
        matrix = xp.stack([xp.stack([cos, sin], axis=1), xp.stack([-sin, cos], axis=1)], axis=1)
        centre = xp.asarray([(H - 1) / 2, (W - 1) / 2], dtype=f)
        offset = centre - (matrix @ (centre + shift)[:, :, None])[:, :, 0]
        return warp_affine(x, matrix, offset)


class RandomCrop:
    """Pad by ``padding`` zeros on every side, then crop a random H x W window (a whole-pixel shift).

    Shapes:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, padding):
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be a non-negative int, got {padding!r}")
        self.padding = padding

    def __repr__(self):
        return f"RandomCrop(padding={self.padding})"

    def __call__(self, x, rng):
        xp = backends.of(x).xp
        N, _, H, W = x.shape
        p = self.padding
        # floor(U[0, 2p+1)) - p: a uniform integer shift in [-p, p]
        dy, dx = (xp.floor(_uniform(rng, N, 0, 2 * p + 1, np.dtype(np.float32))).astype(xp.int64) - p
                  for _ in range(2))
        sy = xp.arange(H)[None, :, None] + dy[:, None, None]
        sx = xp.arange(W)[None, None, :] + dx[:, None, None]
        return _gather(x, xp.broadcast_to(sy, (N, H, W)), xp.broadcast_to(sx, (N, H, W)))


class RandomFlip:
    """Mirror each image left-right with probability ``p`` (off by default in the CLI: digits are not)."""

    def __init__(self, p=0.5):
        _check("RandomFlip", high=1.0, closed=True, p=p)
        self.p = float(p)

    def __repr__(self):
        return f"RandomFlip(p={self.p:g})"

    def __call__(self, x, rng):
        xp = backends.of(x).xp
        flip = rng.random((len(x),), dtype=xp.float32) < self.p
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)


class ColorJitter:
    """Random contrast (about each image's mean) and brightness (added), per image.

    Args:
        brightness: added value drawn from U[-brightness, brightness].
        contrast: factor drawn from U[1 - contrast, 1 + contrast].
        clip: ``(low, high)`` to clip the result to (the data range), or None.
    """

    def __init__(self, brightness=0.0, contrast=0.0, clip=(0.0, 1.0)):
        _check("ColorJitter", brightness=brightness)
        _check("ColorJitter", high=1.0, closed=True, contrast=contrast)
        self.brightness, self.contrast, self.clip = float(brightness), float(contrast), clip

    def __repr__(self):
        return f"ColorJitter(brightness={self.brightness:g}, contrast={self.contrast:g}, clip={self.clip})"

    def __call__(self, x, rng):
        xp = backends.of(x).xp
        N = len(x)
        f = np.dtype(np.float32)
        c = _uniform(rng, N, 1 - self.contrast, 1 + self.contrast, f).astype(x.dtype)[:, None, None, None]
        b = _uniform(rng, N, -self.brightness, self.brightness, f).astype(x.dtype)[:, None, None, None]
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        out = (x - mean) * c + mean + b
        return out if self.clip is None else xp.clip(out, *self.clip)


class Augment:
    """Apply ``transforms`` in order to each training batch, drawing from one seeded generator.

    The generator lives on the batch's device (created at first use) and its state is saved in
    training checkpoints, so a resumed run sees the same augmented batches as an uninterrupted one.

    Args:
        *transforms: callables ``(x, rng) -> x`` (RandomAffine, RandomCrop, RandomFlip, ColorJitter...).
        seed: the generator's seed.

    Shapes:
        (N, C, H, W) -> (N, C, H, W), same dtype and device.
    """

    def __init__(self, *transforms, seed=0):
        self.transforms, self.seed = list(transforms), seed
        self._generator = LazyGenerator(seed)

    def __repr__(self):
        return f"Augment({', '.join(map(repr, self.transforms))}, seed={self.seed})"

    def __call__(self, x):
        if getattr(x, "ndim", None) != 4:
            raise ShapeError(f"Augment: expected images of shape (N, C, H, W), got shape "
                             f"{tuple(getattr(x, 'shape', ()))}; image augmentation needs unflattened input")
        if x.dtype.kind != "f":
            raise DTypeError(f"Augment: expected floating-point images, got dtype {x.dtype}")
        rng = self._generator.on(backends.of(x))
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def get_state(self):
        return self._generator.get_state()

    def set_state(self, state):
        self._generator.set_state(state)


def _check(owner, high=None, closed=False, **values):
    """Raise ValueError naming ``owner`` and the argument unless 0 <= value < high (<= high if closed)."""
    for name, v in values.items():
        if not in_range(v, 0.0, math.inf if high is None else high, high_open=not closed):
            bound = f"in [0, {high:g}{']' if closed else ')'}" if high is not None else "finite and >= 0"
            raise ValueError(f"{owner}: {name} must be a number {bound}, got {v!r}")


TRANSFORM_KEYS = ("rotate", "shift", "scale", "crop", "flip", "brightness", "contrast")


def parse_spec(spec, seed=0):
    """Build an :class:`Augment` from the CLI's ``--augment`` text (see :func:`parse_transforms`).

    ``"none"`` returns None.
    """
    transforms = parse_transforms(spec)
    return Augment(*transforms, seed=seed) if transforms else None


def parse_transforms(spec):
    """The transforms the CLI's ``--augment`` text names, in the order they apply (empty for ``"none"``).

    ``"rotate=10,shift=2,scale=0.1"``: comma-separated ``key=value`` with keys rotate (degrees), shift
    (pixels), scale (fraction), crop (padding in pixels), flip (probability), brightness, contrast.
    ``"default"`` means ``rotate=10,shift=2,scale=0.1`` (digits: no flip).
    """
    text = spec.strip().lower()
    if text in ("", "none"):
        return []
    if text == "default":
        text = "rotate=10,shift=2,scale=0.1"
    values = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in TRANSFORM_KEYS:
            raise ValueError(f"--augment: expected key=value with keys {', '.join(TRANSFORM_KEYS)} "
                             f"(or 'default'), got {item.strip()!r}")
        try:
            values[key] = int(value) if key == "crop" else float(value)
        except ValueError:
            raise ValueError(f"--augment: {key} needs a number, got {value.strip()!r}") from None
    try:
        return _transforms(values)
    except ValueError as e:
        raise ValueError(f"--augment {spec.strip()!r}: {e}") from None


def _transforms(values):
    transforms = []
    if values.keys() & {"rotate", "shift", "scale"}:
        transforms.append(RandomAffine(values.get("rotate", 0.0), values.get("shift", 0.0), values.get("scale", 0.0)))
    if "crop" in values:
        transforms.append(RandomCrop(values["crop"]))
    if "flip" in values:
        transforms.append(RandomFlip(values["flip"]))
    if values.keys() & {"brightness", "contrast"}:
        transforms.append(ColorJitter(values.get("brightness", 0.0), values.get("contrast", 0.0)))
    return transforms

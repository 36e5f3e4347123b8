"""Data augmentation: exact geometry on known cases, seeding, resume, and the --augment option."""

import numpy as np
import pytest
from test_training import synthetic_digits
from tolerance import assert_close

from xpnet import optim
from xpnet.augment import Augment, ColorJitter, RandomAffine, RandomCrop, RandomFlip, parse_spec, warp_affine
from xpnet.errors import ShapeError
from xpnet.models import DeepConvNet
from xpnet.training import Trainer


def images(backend, n=6, dtype=np.float32, seed=0):
    return backend.asarray(np.random.default_rng(seed).random((n, 2, 9, 11)).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_strength_transforms_are_the_identity(backend, dtype):
    x = images(backend, dtype=dtype)
    aug = Augment(RandomAffine(0, 0, 0), RandomCrop(0), RandomFlip(0.0), ColorJitter(0, 0), seed=3)
    y = aug(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert type(y) is type(x)
    # bilinear resampling at whole pixels (4 weighted taps) and the jitter's scale and shift, on [0, 1)
    assert_close(backend.asnumpy(y), backend.asnumpy(x), terms=4 + 2, dtype=dtype)


def test_warp_affine_quarter_turn_and_whole_pixel_shift_are_exact(backend):
    x = backend.asarray(np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32))
    xp, N = backend.xp, 3
    turn = xp.asarray(np.tile(np.array([[0, 1], [-1, 0]], np.float32), (N, 1, 1)))
    centre = xp.asarray(np.array([3.5, 3.5], np.float32))
    y = warp_affine(x, turn, centre - turn @ centre)
    np.testing.assert_array_equal(backend.asnumpy(y), np.rot90(backend.asnumpy(x), k=1, axes=(2, 3)))
    eye = xp.asarray(np.tile(np.eye(2, dtype=np.float32), (N, 1, 1)))
    shifted = backend.asnumpy(warp_affine(x, eye, xp.asarray(np.tile([-1.0, 2.0], (N, 1)))))
    want = np.zeros_like(backend.asnumpy(x))
    want[:, :, 1:, :-2] = backend.asnumpy(x)[:, :, :-1, 2:]  # out[i, j] = x[i - 1, j + 2]
    np.testing.assert_array_equal(shifted, want)


def test_half_pixel_shift_interpolates_bilinearly(backend):
    x = backend.asarray(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    eye = backend.xp.asarray(np.eye(2, dtype=np.float32)[None])
    y = backend.asnumpy(warp_affine(x, eye, backend.xp.asarray(np.array([[0.5, 0.0]], np.float32))))
    np.testing.assert_allclose(y[0, 0, :3], (np.arange(12).reshape(3, 4) + np.arange(4, 16).reshape(3, 4)) / 2)
    np.testing.assert_allclose(y[0, 0, 3], np.arange(12, 16) / 2)  # half of the last row meets the zero border


def test_random_crop_is_a_zero_filled_whole_pixel_shift(backend):
    x = images(backend, n=20)
    y = backend.asnumpy(Augment(RandomCrop(2), seed=0)(x))
    xh = backend.asnumpy(x)
    shifts = set()
    for n in range(len(xh)):
        padded = np.pad(xh[n], ((0, 0), (2, 2), (2, 2)))
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if np.array_equal(padded[:, dy : dy + 9, dx : dx + 11], y[n])]
        assert found, n
        shifts.add(found[0])
    assert len(shifts) > 5  # the shifts really vary from image to image


def test_flip_mirrors_the_chosen_images(backend):
    x = images(backend, n=40)
    y, xh = backend.asnumpy(Augment(RandomFlip(0.5), seed=2)(x)), backend.asnumpy(x)
    flipped = [np.array_equal(y[n], xh[n, :, :, ::-1]) for n in range(40)]
    kept = [np.array_equal(y[n], xh[n]) for n in range(40)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 5 < sum(flipped) < 35
    np.testing.assert_array_equal(backend.asnumpy(Augment(RandomFlip(1.0))(x)), xh[..., ::-1])


def test_color_jitter_changes_contrast_about_the_mean_and_clips(backend):
    x = images(backend, n=50)
    y = backend.asnumpy(Augment(ColorJitter(brightness=0.0, contrast=0.5, clip=None), seed=0)(x))
    xh = backend.asnumpy(x)
    # y = mean + c (x - mean): a mean over 198 pixels on each side, of values in [0, 1)
    assert_close(y.mean(axis=(1, 2, 3)), xh.mean(axis=(1, 2, 3)), terms=2 * 198 + 3)
    ratio = y.std(axis=(1, 2, 3)) / xh.std(axis=(1, 2, 3))
    assert ratio.min() >= 0.5 - 1e-4 and ratio.max() <= 1.5 + 1e-4 and ratio.std() > 0.05
    z = backend.asnumpy(Augment(ColorJitter(brightness=0.9, contrast=0.9), seed=0)(x))
    assert z.min() >= 0.0 and z.max() <= 1.0


def test_affine_keeps_a_centred_digit_centred_and_varies(backend):
    x = np.zeros((30, 1, 28, 28), np.float32)
    x[:, :, 10:18, 12:16] = 1.0
    y = backend.asnumpy(Augment(RandomAffine(degrees=15, translate=0, scale=0.1), seed=1)(backend.asarray(x)))
    rows, cols = np.arange(28)[:, None], np.arange(28)[None, :]
    mass = y.sum(axis=(1, 2, 3))
    cy, cx = (y[:, 0] * rows).sum(axis=(1, 2)) / mass, (y[:, 0] * cols).sum(axis=(1, 2)) / mass
    np.testing.assert_allclose(cy, 13.5, atol=0.05)
    np.testing.assert_allclose(cx, 13.5, atol=0.05)
    assert 0.75 * 32 < mass.min() and mass.max() < 1.25 * 32  # area scales by zoom^2, zoom in [0.9, 1.1]
    assert len({round(float(m), 3) for m in mass}) > 10


def test_seeded_and_resumable(backend):
    x = images(backend)
    a, b, c = (Augment(RandomAffine(10, 2, 0.1), RandomCrop(1), seed=s) for s in (4, 4, 5))
    ya, yb, yc = (backend.asnumpy(g(x)) for g in (a, b, c))
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    state = a.get_state()
    nxt = backend.asnumpy(a(x))
    d = Augment(RandomAffine(10, 2, 0.1), RandomCrop(1), seed=99)
    d.set_state(state)
    np.testing.assert_array_equal(backend.asnumpy(d(x)), nxt)


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match=r"RandomAffine: degrees must be a number in \[0, 180\], got -1"):
        RandomAffine(degrees=-1)
    with pytest.raises(ValueError, match=r"RandomAffine: scale must be a number in \[0, 1\), got 1.5"):
        RandomAffine(scale=1.5)
    with pytest.raises(ValueError, match="RandomCrop: padding must be a non-negative int, got 1.5"):
        RandomCrop(1.5)
    with pytest.raises(ShapeError, match=r"Augment: expected images of shape \(N, C, H, W\), got shape \(4, 784\)"):
        Augment(RandomFlip())(np.zeros((4, 784), np.float32))


def test_parse_spec():
    assert parse_spec("none") is None
    text = repr(parse_spec("default"))
    assert "RandomAffine(degrees=10, translate=2, scale=0.1)" in text and "Flip" not in text
    aug = parse_spec("crop=2, flip=0.5, brightness=0.1")
    assert [type(t).__name__ for t in aug.transforms] == ["RandomCrop", "RandomFlip", "ColorJitter"]
    with pytest.raises(ValueError, match="--augment: expected key=value .* got 'spin=3'"):
        parse_spec("spin=3")
    with pytest.raises(ValueError, match="--augment: crop needs a number, got 'x'"):
        parse_spec("crop=x")


def _trainer(out_dir, epochs):
    train, test = synthetic_digits(120, seed=2), synthetic_digits(40, seed=3)
    model = DeepConvNet(output_size=4, seed=7)
    return Trainer(model, optim.Adam(), train, test, epochs=epochs, batch_size=40, seed=5, out_dir=str(out_dir),
                   progress=False, augment=parse_spec("rotate=10,shift=2,crop=1", seed=11))


def test_resume_with_augmentation_is_bit_identical(tmp_path):
    straight = _trainer(tmp_path / "a", epochs=2)
    straight.fit()
    _trainer(tmp_path / "b", epochs=1).fit()
    resumed = _trainer(tmp_path / "b", epochs=2).resume()
    resumed.fit()
    for k, v in straight.model.state_dict().items():
        assert np.array_equal(v, resumed.model.state_dict()[k]), k

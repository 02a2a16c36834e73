"""Host-side preprocessing against its definitions: random crop and flip, normalisation,
torchvision's crops on decoded images and on encoded JPEG bytes, eval transforms."""

import numpy as np
import pytest

from bnnlab.data import augment

from jpegs import jpeg


def test_random_crop_and_flip():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(64, 6, 6, 3)).astype(np.uint8)
    cropped = augment.random_crop(images, 2, np.random.default_rng(1))
    assert cropped.shape == images.shape
    # Every crop is a shifted window of the zero-padded image.
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)])
    for i in range(8):
        assert any(
            np.array_equal(cropped[i], padded[i, y : y + 6, x : x + 6])
            for y in range(5)
            for x in range(5)
        )
    flipped = augment.random_flip(images, np.random.default_rng(2))
    same = [np.array_equal(f, im) for f, im in zip(flipped, images, strict=True)]
    mirrored = [np.array_equal(f, im[:, ::-1]) for f, im in zip(flipped, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and 10 < sum(mirrored) < 54


def test_imagenet_transforms_shapes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(50, 70, 3)).astype(np.uint8)
    assert augment.random_resized_crop(image, 32, rng).shape == (32, 32, 3)
    assert augment.resize_center_crop(image, 36, 32).shape == (32, 32, 3)
    batch = {"image": [image, image[:40]], "label": np.array([1, 2])}
    out = augment.train_preprocess(
        batch, rng, augment="imagenet", normalization="imagenet", image_size=32
    )
    assert out["image"].shape == (2, 32, 32, 3) and out["image"].dtype == np.float32
    out = augment.eval_preprocess(
        batch, transform="imagenet", normalization="imagenet", image_size=32
    )
    assert out["image"].shape == (2, 32, 32, 3)


def test_normalize_equals_the_per_channel_formula_bit_for_bit():
    rng = np.random.default_rng(0)
    for shape in [(4, 9, 11, 3), (9, 11, 3), (5, 8, 8, 1)]:
        x = rng.random(shape, dtype=np.float32)
        name = "imagenet" if shape[-1] == 3 else "digits"
        mean, std = (np.asarray(v, np.float32) for v in augment.NORMALIZATIONS[name])
        np.testing.assert_array_equal(augment.normalize(x, name), (x - mean) / std)


@pytest.mark.parametrize("hw", [(375, 500), (600, 900), (120, 90)])
def test_resized_crop_of_jpeg_bytes_matches_the_decoded_image(hw):
    """Same crop box (same rng draws), pixels equal up to the box-border filter taps and the
    DCT-domain downscale the 600×900 image gets for large crops."""
    data_bytes = jpeg(*hw, seed=1)
    decoded = augment.decode(data_bytes)
    assert decoded.shape == (*hw, 3)
    diffs = []
    for seed in range(20):
        rng_bytes, rng_array = np.random.default_rng(seed), np.random.default_rng(seed)
        got = augment.random_resized_crop(data_bytes, 64, rng_bytes, scale=(0.08, 1.0))
        want = augment.random_resized_crop(decoded, 64, rng_array, scale=(0.08, 1.0))
        assert got.shape == want.shape == (64, 64, 3) and got.dtype == np.uint8
        assert rng_bytes.random() == rng_array.random()  # the same draws were consumed
        diffs.append(np.abs(got.astype(np.float32) - want).mean())
    assert max(diffs) < 3.0, diffs


def test_imagenet_preprocessing_of_encoded_batches():
    images = [jpeg(375, 500, 0), jpeg(333, 500, 1), jpeg(500, 375, 2)]
    batch = {"image": images, "label": np.array([0, 1, 2], np.int32)}
    out = augment.train_preprocess(
        batch, np.random.default_rng(0), augment="imagenet", normalization="imagenet"
    )
    assert out["image"].shape == (3, 224, 224, 3) and out["image"].dtype == np.float32
    decoded = {"image": [augment.decode(b) for b in images], "label": batch["label"]}
    kw = dict(transform="imagenet", normalization="imagenet")
    np.testing.assert_array_equal(
        augment.eval_preprocess(batch, **kw)["image"],
        augment.eval_preprocess(decoded, **kw)["image"],
    )


def test_upsample_is_nearest_neighbour_for_integer_factors():
    images = np.random.default_rng(3).random((2, 3, 3, 1), dtype=np.float32)
    up = augment.upsample(images, 9)
    # out[y, x] = in[y // 3, x // 3]
    y, x = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    np.testing.assert_array_equal(up, images[:, y // 3, x // 3])
    assert augment.upsample(images, None) is images and augment.upsample(images, 3) is images

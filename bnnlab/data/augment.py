"""Host-side (NumPy) preprocessing: the papers' augmentations and normalisations.

Every random choice comes from the ``rng`` argument, which the loader derives from
(seed, step), so a resumed run sees exactly the same augmented batches.

ImageNet examples may arrive as encoded JPEG bytes (``sources.TfdsSource`` skips TFDS's
decoding for them): ``random_resized_crop`` then reads only the image size from the header,
draws the crop exactly as for a decoded image, and lets PIL decode and resize just that box
(with libjpeg's DCT downscaling when the crop is at least twice the output), which is what makes
the ImageNet input pipeline fast enough for an accelerator (``benchmarks/input_pipeline.py``).
"""

from __future__ import annotations

import io
import math

import numpy as np

NORMALIZATIONS = {
    # ReCU and SiMaN normalise CIFAR with ImageNet statistics; so does everything ImageNet.
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # The std many PyTorch CIFAR scripts use, AdderNet's released code among them (it is not the
    # per-pixel std of CIFAR-10, which "cifar" gives).
    "cifar_legacy": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "half": ((0.5,), (0.5,)),  # the reconfigurable-BNN code's grayscale normalisation
    "digits": ((0.3049,), (0.3759,)),  # train-split mean/std of the embedded digits
    "none": ((0.0,), (1.0,)),
}
TRAIN_AUGMENTATIONS = ("none", "crop", "crop_flip", "imagenet")


def to_unit_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def normalize(images: np.ndarray, name: str) -> np.ndarray:
    """(x − mean) / std per channel (the last axis)."""
    mean, std = NORMALIZATIONS[name]
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    images = np.asarray(images)
    if images.ndim < 2 or mean.size == 1:
        return (images - mean) / std
    # The same two operations on rows of W·C values with tiled constants: NumPy broadcasts
    # over a last axis of 3 about 10× slower than over long rows (ImageNet at 224).
    w, c = images.shape[-2:]
    rows = images.reshape(*images.shape[:-2], w * c)
    out = (rows - np.tile(mean, w)) / np.tile(std, w)
    return out.reshape(images.shape)


def input_range(name: str) -> tuple[float, float]:
    """The interval that ``normalize(to_unit_float(x), name)`` maps every pixel x into: unit
    pixels in [0, 1], per channel (0 − mean) / std to (1 − mean) / std, over all channels."""
    mean, std = (np.asarray(v, np.float64) for v in NORMALIZATIONS[name])
    return float(np.min(-mean / std)), float(np.max((1.0 - mean) / std))


def _local(shard, n: int) -> tuple[int, int]:
    """(offset, global size) of a process's ``n`` examples in the global batch."""
    offset, total = shard or (0, n)
    if not 0 <= offset <= total - n:
        raise ValueError(f"shard {shard} cannot hold {n} examples.")
    return offset, total


def random_crop(
    images: np.ndarray, padding: int, rng: np.random.Generator, shard=None
) -> np.ndarray:
    """Zero-pad by ``padding`` and crop back at a random offset (torchvision RandomCrop).

    ``shard = (offset, global batch)``: these images are that slice of a global batch whose
    draws come from ``rng`` (the same generator in every process), so an example's crop does
    not depend on how many processes share the batch.
    """
    n, h, w, _ = images.shape
    offset, total = _local(shard, n)
    padded = np.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    dy = rng.integers(0, 2 * padding + 1, size=total)[offset : offset + n]
    dx = rng.integers(0, 2 * padding + 1, size=total)[offset : offset + n]
    return np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def random_flip(images: np.ndarray, rng: np.random.Generator, shard=None) -> np.ndarray:
    """Mirror each image with probability ½ (``shard`` as in ``random_crop``)."""
    offset, total = _local(shard, len(images))
    flip = rng.random(total)[offset : offset + len(images)] < 0.5
    out = images.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    squeeze = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
    return out[..., None] if squeeze else out


def rrc_box(h: int, w: int, rng: np.random.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """The crop (y, x, height, width) of torchvision's RandomResizedCrop: a random area
    fraction and aspect ratio, ten tries, then the central square."""
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            return int(y), int(x), ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def random_resized_crop(
    image, size: int, rng: np.random.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> np.ndarray:
    """torchvision's RandomResizedCrop of a decoded image (H, W, C) or of encoded JPEG/PNG
    bytes (decoded box only, see the module docstring); the same ``rng`` draws either way."""
    if isinstance(image, bytes | np.bytes_):
        return decode_resized_box(image, size, rng, scale, ratio)
    y, x, ch, cw = rrc_box(*image.shape[:2], rng, scale, ratio)
    return _resize(image[y : y + ch, x : x + cw], (size, size))


def _open(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def decode_resized_box(
    data: bytes, size: int, rng: np.random.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> np.ndarray:
    """RandomResizedCrop of encoded bytes: the box from the header's size, then PIL's decode
    (JPEG: DCT-scaled by 2, 4 or 8 while the box stays ≥ ``size``) and a bilinear resize of
    the box alone. Pixels differ from crop-then-resize of the full decode only at the box's
    border (the filter reads the neighbours outside it) and by the DCT scaling."""
    from PIL import Image

    im = _open(data)
    w, h = im.size
    y, x, ch, cw = rrc_box(h, w, rng, scale, ratio)
    if im.format == "JPEG":
        # draft() picks the largest reduction that keeps the image at least this size.
        im.draft("RGB", (math.ceil(w * size / cw), math.ceil(h * size / ch)))
    im = im.convert("RGB")
    sx, sy = im.size[0] / w, im.size[1] / h
    box = (x * sx, y * sy, (x + cw) * sx, (y + ch) * sy)
    return np.asarray(im.resize((size, size), Image.BILINEAR, box=box))


def decode(data) -> np.ndarray:
    """A decoded image (H, W, 3) from encoded bytes; arrays pass through."""
    if isinstance(data, bytes | np.bytes_):
        return np.asarray(_open(data).convert("RGB"))
    return np.asarray(data)


def resize_center_crop(image, resize: int, size: int) -> np.ndarray:
    """Resize the short side to ``resize``, then take the central ``size``×``size`` crop."""
    image = decode(image)
    h, w = image.shape[:2]
    s = resize / min(h, w)
    image = _resize(image, (max(size, int(round(h * s))), max(size, int(round(w * s)))))
    h, w = image.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return image[y : y + size, x : x + size]


def upsample(images: np.ndarray, size: int | None) -> np.ndarray:
    """Square images brought to ``size``: nearest-neighbour for integer factors (runs ImageNet
    models on digits), bilinear otherwise (MNIST's 28 → 32 in the reconfigurable recipe)."""
    if size is None or images.shape[1] == size:
        return images
    factor = size // images.shape[1]
    if factor * images.shape[1] == size:
        return images.repeat(factor, axis=1).repeat(factor, axis=2)
    return np.stack([_resize(np.asarray(im), (size, size)) for im in images])


def train_augment(
    batch,
    rng,
    *,
    augment: str,
    crop_padding: int = 4,
    image_size: int | None = None,
    rrc_scale=(0.08, 1.0),
    shard=None,
):
    """The training augmentation of one (local) batch, images left in their stored dtype
    (uint8 for image datasets: what the input pipeline's workers send, 4× less than float32);
    ``shard = (offset, global batch)`` places the batch in the global one (``random_crop``),
    None = the whole batch."""
    images = batch["image"]
    if augment == "imagenet":
        # One generator per example of the global batch (the crop box's rejection sampling
        # draws a variable number of values), this process's slice of them.
        offset, total = _local(shard, len(images))
        per_example = rng.spawn(total)[offset : offset + len(images)]
        size = image_size or 224
        images = np.stack(
            [
                random_resized_crop(im, size, r, rrc_scale)
                for im, r in zip(images, per_example, strict=True)
            ]
        )
        images = random_flip(images, rng, shard)
    else:
        images = upsample(np.asarray(images), image_size)
        if augment in ("crop", "crop_flip"):
            images = random_crop(images, crop_padding, rng, shard)
        if augment == "crop_flip":
            images = random_flip(images, rng, shard)
    return {"image": images, "label": batch["label"]}


def finish(batch, *, normalization: str):
    """Unit floats, normalised: the last step of the preprocessing (the pipeline runs it in the
    training process, after the workers' uint8 batches arrive)."""
    return {**batch, "image": normalize(to_unit_float(batch["image"]), normalization)}


def train_preprocess(batch, rng, *, normalization: str, **kwargs):
    """``finish(train_augment(batch, rng, **kwargs))``: one augmented, normalised batch."""
    return finish(train_augment(batch, rng, **kwargs), normalization=normalization)


def eval_preprocess(batch, *, transform: str, normalization: str, image_size: int | None = None):
    images = batch["image"]
    if transform == "imagenet":
        size = image_size or 224
        images = np.stack(
            [resize_center_crop(im, int(round(size * 256 / 224)), size) for im in images]
        )
    else:
        images = upsample(np.asarray(images), image_size)
    return finish({"image": images, "label": batch["label"]}, normalization=normalization)

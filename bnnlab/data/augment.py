"""Host-side (NumPy) preprocessing: the papers' augmentations and normalisations.

Every random choice comes from the ``rng`` argument, which the loader derives from
(seed, step), so a resumed run sees exactly the same augmented batches.
"""

from __future__ import annotations

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
EVAL_TRANSFORMS = ("none", "imagenet")


def to_unit_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def normalize(images: np.ndarray, name: str) -> np.ndarray:
    mean, std = NORMALIZATIONS[name]
    return (images - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def random_crop(images: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad by ``padding`` and crop back at a random offset (torchvision RandomCrop)."""
    n, h, w, _ = images.shape
    padded = np.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    return np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(len(images)) < 0.5
    out = images.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    squeeze = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
    return out[..., None] if squeeze else out


def random_resized_crop(
    image: np.ndarray, size: int, rng: np.random.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> np.ndarray:
    """torchvision's RandomResizedCrop: a random area fraction and aspect ratio, resized."""
    h, w = image.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            return _resize(image[y : y + ch, x : x + cw], (size, size))
    side = min(h, w)  # fallback: centre crop, as torchvision
    y, x = (h - side) // 2, (w - side) // 2
    return _resize(image[y : y + side, x : x + side], (size, size))


def resize_center_crop(image: np.ndarray, resize: int, size: int) -> np.ndarray:
    """Resize the short side to ``resize``, then take the central ``size``×``size`` crop."""
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


def train_preprocess(
    batch,
    rng,
    *,
    augment: str,
    normalization: str,
    crop_padding: int = 4,
    image_size: int | None = None,
    rrc_scale=(0.08, 1.0),
):
    images = batch["image"]
    if augment == "imagenet":
        images = np.stack(
            [random_resized_crop(im, image_size or 224, rng, rrc_scale) for im in images]
        )
        images = random_flip(images, rng)
    else:
        images = upsample(np.asarray(images), image_size)
        if augment in ("crop", "crop_flip"):
            images = random_crop(images, crop_padding, rng)
        if augment == "crop_flip":
            images = random_flip(images, rng)
    return {"image": normalize(to_unit_float(images), normalization), "label": batch["label"]}


def eval_preprocess(batch, *, transform: str, normalization: str, image_size: int | None = None):
    images = batch["image"]
    if transform == "imagenet":
        size = image_size or 224
        images = np.stack(
            [resize_center_crop(im, int(round(size * 256 / 224)), size) for im in images]
        )
    else:
        images = upsample(np.asarray(images), image_size)
    return {"image": normalize(to_unit_float(images), normalization), "label": batch["label"]}

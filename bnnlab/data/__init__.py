"""Datasets by name: the embedded digits set, the standard library's help text (byte-level
language modelling), TFDS datasets, and fake data.

``data.build(config, process_index, process_count)`` returns four values: the train loader,
a function that yields eval batches, the dataset's metadata and the number of eval examples;
unknown names and unprepared TFDS datasets fail before any compute with a message saying what
to do.
"""

from __future__ import annotations

import dataclasses
import functools

from bnnlab.data import augment, pipeline, sources
from bnnlab.data.pipeline import resolve_workers
from bnnlab.data.sources import DatasetNotFoundError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    image_shape: tuple[int, ...]  # (H, W, C); (T,) for token sequences
    train_split: str = "train"
    eval_split: str = "test"
    augment: str = "crop_flip"  # default training augmentation
    eval_transform: str = "none"
    normalization: str = "imagenet"

    @property
    def encoded_images(self) -> bool:
        """Records hold encoded, variable-size images (ImageNet's JPEGs), which stay encoded
        until the preprocessing crops them (and are worth decoding in worker processes)."""
        return self.augment == "imagenet"


# Defaults follow the papers: CIFAR random crop (pad 4) + flip with ImageNet statistics (ReCU,
# SiMaN); digits, MNIST-like and SVHN data are not flipped.
DATASETS = {
    "digits": DatasetInfo(10, (8, 8, 1), augment="crop", normalization="digits"),
    "cifar10": DatasetInfo(10, (32, 32, 3)),
    "cifar100": DatasetInfo(100, (32, 32, 3)),
    "mnist": DatasetInfo(10, (28, 28, 1), augment="crop", normalization="half"),
    "fashion_mnist": DatasetInfo(10, (28, 28, 1), augment="crop", normalization="half"),
    "svhn_cropped": DatasetInfo(10, (32, 32, 3), augment="crop"),
    "imagenet2012": DatasetInfo(
        1000,
        (224, 224, 3),
        eval_split="validation",
        augment="imagenet",
        eval_transform="imagenet",
    ),
    "fake": DatasetInfo(10, (32, 32, 3), augment="none", normalization="imagenet"),
    # Next-byte prediction over windows of 128 bytes of CPython's help topics (pydoc_data):
    # "images" are byte ids (B, 128), "labels" the next bytes (B, 128).
    "pydoc": DatasetInfo(256, (128,), augment="none", normalization="none"),
}
FAKE_SIZES = {"train": 512, "test": 256}


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Available: {', '.join(sorted(DATASETS))}.")
    return DATASETS[name]


def load_sources(name: str, data_dir: str | None = None):
    """(train source, eval source) for a dataset name."""
    meta = info(name)
    if name == "digits":
        return sources.digits()
    if name == "pydoc":
        return sources.pydoc(meta.image_shape[0])
    if name == "fake":
        return tuple(
            sources.fake(FAKE_SIZES[s], meta.image_shape, meta.num_classes, seed=i)
            for i, s in enumerate(("train", "test"))
        )
    return (
        sources.TfdsSource(name, meta.train_split, data_dir, meta.encoded_images),
        sources.TfdsSource(name, meta.eval_split, data_dir, meta.encoded_images),
    )


def normalization_of(config) -> str:
    """The name (``augment.NORMALIZATIONS``) of the normalisation ``config``'s images get."""
    name = config.normalization or info(config.dataset).normalization
    if name not in augment.NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {name!r}; use one of {tuple(augment.NORMALIZATIONS)}."
        )
    return name


def build(config, process_index: int = 0, process_count: int = 1):
    """``(loader, eval_iter, meta, num_eval)`` for ``config.dataset``: the
    ``pipeline.TrainLoader``, a function returning a fresh iterator over the eval batches, the
    ``DatasetInfo`` and the number of examples in the whole eval split (every process's)."""
    meta = info(config.dataset)
    train_source, eval_source = load_sources(config.dataset, config.data_dir)
    augmentation = config.augment or meta.augment
    if augmentation not in augment.TRAIN_AUGMENTATIONS:
        raise ValueError(
            f"Unknown augment {augmentation!r}; use one of {augment.TRAIN_AUGMENTATIONS}."
        )
    normalization = normalization_of(config)
    train_fn = functools.partial(
        augment.train_augment,
        augment=augmentation,
        crop_padding=config.crop_padding,
        image_size=config.image_size,
        rrc_scale=tuple(config.rrc_scale),
    )
    finish_fn = functools.partial(augment.finish, normalization=normalization)
    eval_fn = functools.partial(
        augment.eval_preprocess,
        transform=meta.eval_transform,
        normalization=normalization,
        image_size=config.image_size,
    )
    loader = pipeline.TrainLoader(
        train_source,
        config.batch_size,
        config.seed,
        train_fn,
        process_index,
        process_count,
        finish=finish_fn,
    )

    def eval_iter():
        return pipeline.eval_batches(
            eval_source, config.eval_batch_size, eval_fn, process_index, process_count
        )

    return loader, eval_iter, meta, len(eval_source)


__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "build",
    "info",
    "load_sources",
    "normalization_of",
    "resolve_workers",
]

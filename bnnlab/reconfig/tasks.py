"""Tasks of a reconfigurable model: their data (with optional fixed transforms that make
distinct offline tasks from one dataset) and the ``task`` variable collection that selects one.

A task is written ``"dataset[:transform]"``: ``digits``, ``digits:pixels`` (a fixed permutation
of the pixels), ``digits:labels`` (a fixed permutation of the labels), ``digits:invert``
(1 − x), or any TFDS name of ``bnnlab.data`` (``cifar10``, ``fashion_mnist``, ``svhn_cropped``,
``mnist``…). The transforms use fixed public seeds: they define tasks, they are not keys. Tasks
are referred to by opaque ids ``task0 … task{M-1}`` in checkpoints and key derivation.
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from bnnlab import data
from bnnlab.data import augment, pipeline
from bnnlab.reconfig import derive, keys, layers

TRANSFORMS = ("", "pixels", "labels", "invert")
TRANSFORM_SEED = 2021  # public: the pixel/label permutations that define derived tasks


@dataclasses.dataclass(frozen=True)
class Task:
    task_id: str  # "task<index>": the name in metrics, key derivation and exports
    dataset: str
    transform: str
    num_classes: int
    index: int  # the row of the per-task BatchNorm parameters


def parse(specs) -> list[Task]:
    """Tasks from ``("digits", "digits:pixels", ...)``; ids are their positions."""
    if len(specs) < 1:
        raise ValueError("config.reconfig.tasks must name at least one task.")
    tasks = []
    for i, spec in enumerate(specs):
        dataset, _, transform = spec.partition(":")
        if transform not in TRANSFORMS:
            raise ValueError(
                f"Task {spec!r}: unknown transform {transform!r}; use one of "
                f"{[t for t in TRANSFORMS if t]} or none."
            )
        tasks.append(Task(f"task{i}", dataset, transform, data.info(dataset).num_classes, i))
    return tasks


def lookup(tasks: list[Task], task_id: str) -> Task:
    for task in tasks:
        if task.task_id == task_id:
            return task
    raise ValueError(
        f"Unknown task id {task_id!r}; this model has {', '.join(t.task_id for t in tasks)}."
    )


class _Transformed:
    """A source whose images or labels go through a fixed permutation."""

    def __init__(self, source, transform: str, num_classes: int, image_size: int):
        self.source, self.transform = source, transform
        rng = np.random.default_rng(TRANSFORM_SEED)
        self.pixels = rng.permutation(image_size)
        self.labels = rng.permutation(num_classes)

    def __len__(self):
        return len(self.source)

    def get(self, indices):
        batch = self.source.get(indices)
        images, labels = batch["image"], batch["label"]
        if self.transform == "pixels":
            flat = np.asarray(images).reshape(len(labels), -1, images.shape[-1])
            images = flat[:, self.pixels].reshape(images.shape)
        elif self.transform == "invert":
            top = 255 if np.asarray(images).dtype == np.uint8 else 1.0
            images = top - np.asarray(images)
        elif self.transform == "labels":
            labels = self.labels[labels]
        return {"image": images, "label": labels}


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if images.shape[-1] == channels:
        return images
    if images.shape[-1] == 1:
        return np.repeat(images, channels, axis=-1)
    raise ValueError(f"Cannot turn {images.shape[-1]}-channel images into {channels} channels.")


def _preprocess(
    batch, rng=None, shard=None, *, config, normalization: str, channels: int, flip: bool
):
    images = augment.upsample(np.asarray(batch["image"]), config.image_size)
    images = _to_channels(augment.to_unit_float(images), channels)
    if rng is not None:
        images = augment.random_crop(images, config.crop_padding, rng, shard)
        if flip:
            images = augment.random_flip(images, rng, shard)
    return {"image": augment.normalize(images, normalization), "label": batch["label"]}


def build_data(config, tasks: list[Task], process_index: int = 0, process_count: int = 1):
    """Per task: a training loader (seeded per task) and an eval-batch factory.

    Every task's images are brought to one shape: upsampled to ``config.image_size`` and given
    the channel count of the widest task (grayscale repeated), as the reference resizes all
    datasets to 32×32×3.
    """
    loaded = [data.load_sources(t.dataset, config.data_dir) for t in tasks]
    channels = max(data.info(t.dataset).image_shape[-1] for t in tasks)
    loaders, evals = [], []
    for i, (task, (train_src, eval_src)) in enumerate(zip(tasks, loaded, strict=True)):
        meta = data.info(task.dataset)
        if task.transform:
            size = int(np.prod(meta.image_shape[:2]))
            train_src = _Transformed(train_src, task.transform, task.num_classes, size)
            eval_src = _Transformed(eval_src, task.transform, task.num_classes, size)
        norm = config.normalization or (
            "half" if channels == 1 or meta.image_shape[-1] == 1 else "imagenet"
        )
        if task.dataset == "digits" and not config.normalization:
            norm = "digits"
        # The reference flips every dataset; digits and their variants are not flip-invariant.
        flip = task.dataset not in ("digits", "mnist", "svhn_cropped")
        fn = functools.partial(
            _preprocess, config=config, normalization=norm, channels=channels, flip=flip
        )
        loaders.append(
            pipeline.TrainLoader(
                train_src, config.batch_size, config.seed + i, fn, process_index, process_count
            )
        )
        evals.append(
            functools.partial(
                pipeline.eval_batches,
                eval_src,
                config.eval_batch_size,
                functools.partial(fn, rng=None),
                process_index,
                process_count,
            )
        )
    return loaders, evals


def task_variables(template, task: Task, seed: bytes, model_seed: bytes) -> dict:
    """The ``task`` collection that makes the model compute ``task`` under the task's
    ``seed`` and the ``model_seed`` (``derive``): permutations, masks, row, class count."""
    flat = traverse_util.flatten_dict(template, sep="/")
    out = {}
    for k, v in flat.items():
        if k.endswith("/perm"):
            out[k] = jnp.asarray(derive.permutation(seed, k[: -len("/perm")], v.shape[0]))
        elif k.endswith(layers.SHARED_MASK):
            out[k] = jnp.asarray(derive.uniform_mask(model_seed, k, v.shape[0]))
        elif k.endswith(layers.TASK_MASK):
            out[k] = jnp.asarray(derive.uniform_mask(seed, k, v.shape[0]))
        elif k.endswith("index"):
            out[k] = jnp.asarray(task.index, jnp.int32)
        elif k.endswith("num_classes"):
            out[k] = jnp.asarray(task.num_classes, jnp.int32)
        else:
            raise ValueError(f"Unexpected entry {k!r} in the task collection.")
    return traverse_util.unflatten_dict(out, sep="/")


def task_collections(template, tasks, key_material: keys.KeyMaterial) -> list[dict]:
    """Per task, the extra variables that select it under the keys (``template``: the model's
    ``task`` collection, shapes only)."""
    model_seed = key_material.model_seed()
    return [
        {"task": task_variables(template, t, key_material.seed(t.task_id), model_seed)}
        for t in tasks
    ]

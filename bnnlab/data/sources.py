"""Where examples come from: the embedded digits set, TFDS array_record data, fake data.

A *source* is anything with ``len(source)`` and ``source.get(indices) -> dict of arrays``
(batched random access), which is what a deterministic, resumable loader needs.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

DIGITS_SPLIT_SEED = 0  # fixed: the digits train/test split never depends on the run's seed
DIGITS_TEST_FRACTION = 0.2


class DatasetNotFoundError(ValueError):
    """A TFDS dataset is not prepared in the data directory (and cannot be downloaded here)."""


@dataclasses.dataclass
class ArraySource:
    """In-memory examples: ``images`` (N, H, W, C) and ``labels`` (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices) -> dict[str, np.ndarray]:
        return {"image": self.images[indices], "label": self.labels[indices]}


class TfdsSource:
    """Random access into a prepared TFDS dataset through ``tfds.data_source`` (no TensorFlow).

    ``encoded_images=True`` skips TFDS's image decoding: ``get`` returns the records' encoded
    bytes (ImageNet's JPEGs), which the preprocessing decodes, cropping first
    (``augment.random_resized_crop``), in the input pipeline's worker processes.
    """

    def __init__(self, name: str, split: str, data_dir: str | None, encoded_images: bool = False):
        import tensorflow_datasets as tfds

        self.encoded_images = encoded_images
        decoders = {"image": tfds.decode.SkipDecoding()} if encoded_images else None
        try:
            self._source = tfds.data_source(
                name, split=split, data_dir=data_dir, download=False, decoders=decoders
            )
            size = len(self._source)
        except Exception as e:  # tfds raises several types for "not prepared"
            where = data_dir or "the default TFDS data directory (~/tensorflow_datasets)"
            raise DatasetNotFoundError(
                f"TFDS dataset {name!r} (split {split!r}) is not prepared in {where} as "
                f"array_record files ({type(e).__name__}: {str(e).splitlines()[0]}). Prepare it "
                f"once on a machine with internet and TensorFlow:\n"
                f"  pip install tensorflow tensorflow-datasets && "
                f"tfds build {name} --file_format=array_record --data_dir=DIR\n"
                f"then pass --config.data_dir=DIR. To run without it, use the recipe's "
                f":runlocal variant (the embedded digits data)."
            ) from e
        logging.info("TFDS %s[%s]: %d examples", name, split, size)

    def __len__(self) -> int:
        return len(self._source)

    def get(self, indices) -> dict[str, np.ndarray]:
        keys = [int(i) for i in indices]
        try:
            records = self._source.__getitems__(keys)  # one batched read
        except TypeError:  # tfds.testing.mock_data's sources only support single reads
            records = [self._source[k] for k in keys]
        labels = np.asarray([r["label"] for r in records], np.int32)
        if self.encoded_images:
            return {"image": [bytes(r["image"]) for r in records], "label": labels}
        images = [np.asarray(r["image"]) for r in records]
        if len({im.shape for im in images}) == 1:
            return {"image": np.stack(images), "label": labels}
        # Variable-size images (ImageNet) stay a list; the preprocessing crops them.
        return {"image": images, "label": labels}


def digits() -> tuple[ArraySource, ArraySource]:
    """scikit-learn's 8×8 handwritten digits (1,797 images, shipped inside the package),
    as floats in [0, 1], split 80/20 with a fixed permutation."""
    from sklearn import datasets

    images, labels = datasets.load_digits(return_X_y=True)
    images = (images.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32)
    labels = labels.astype(np.int32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    n_test = int(round(DIGITS_TEST_FRACTION * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return ArraySource(images[train], labels[train]), ArraySource(images[test], labels[test])


PYDOC_TEST_FRACTION = 0.1


def pydoc_topics() -> dict[str, bytes]:
    """The help topics that ship with CPython (``pydoc_data.topics``: 79 topics, ~0.46 MB of
    English documentation with code), as UTF-8 bytes by topic name."""
    from pydoc_data import topics

    return {name: text.encode("utf-8") for name, text in sorted(topics.topics.items())}


def byte_windows(text: bytes, length: int) -> ArraySource:
    """Consecutive non-overlapping windows of ``length`` + 1 bytes: ``image`` the first
    ``length`` (the model's input) and ``label`` the next byte of each (next-byte targets)."""
    tokens = np.frombuffer(text, np.uint8).astype(np.int32)
    n = (len(tokens) - 1) // length
    idx = np.arange(n)[:, None] * length + np.arange(length + 1)[None, :]
    windows = tokens[idx]
    return ArraySource(windows[:, :-1], windows[:, 1:])


def pydoc(length: int) -> tuple[ArraySource, ArraySource]:
    """Byte-level language modelling on the standard library's help topics: whole topics are
    held out for the test split (a fixed 10 % of them, never the run's seed), so test text is
    never seen in training."""
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"the pydoc sequence length must be a positive integer, got {length!r}.")
    topics = pydoc_topics()
    names = sorted(topics)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(names))
    n_test = max(1, int(round(PYDOC_TEST_FRACTION * len(names))))
    test = {names[i] for i in order[:n_test]}
    join = b"\n\n".join
    return (
        byte_windows(join(topics[n] for n in names if n not in test), length),
        byte_windows(join(topics[n] for n in names if n in test), length),
    )


def fake(num_examples: int, image_shape, num_classes: int, seed: int = 0) -> ArraySource:
    """Random uint8 images and labels (benchmarks, smoke tests)."""
    rng = np.random.default_rng(seed)
    return ArraySource(
        rng.integers(0, 256, size=(num_examples, *image_shape), dtype=np.uint8),
        rng.integers(0, num_classes, size=num_examples).astype(np.int32),
    )

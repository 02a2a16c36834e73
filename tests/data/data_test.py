"""Datasets by name (``bnnlab.data.build``): deterministic resumable batches, process slices,
eval padding, upsampling, TFDS through mock data, and the errors for unknown or unprepared
datasets."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bnnlab import config_lib, data
from bnnlab.data import pipeline, sources


def config(**overrides):
    c = config_lib.base()
    c.dataset = "digits"
    c.batch_size = 32
    c.eval_batch_size = 40
    c.crop_padding = 1
    c.update(overrides)
    return c


def test_batches_are_a_function_of_seed_and_step():
    loader, _, _, _ = data.build(config())
    again, _, _, _ = data.build(config())
    for step in (0, 5, 44, 45, 200):
        a, b = loader.batch(step), again.batch(step)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other, _, _, _ = data.build(config(seed=1))
    assert not np.array_equal(loader.batch(0)["label"], other.batch(0)["label"])
    # Resuming the iterator at step s gives the batches an uninterrupted one gives.
    from_start = loader.iterate(0)
    uninterrupted = [next(from_start) for _ in range(6)]
    resumed = loader.iterate(4)
    for expected in uninterrupted[4:]:
        np.testing.assert_array_equal(next(resumed)["image"], expected["image"])


def test_epoch_is_a_permutation():
    loader, _, _, _ = data.build(config(augment="none"))
    steps = loader.steps_per_epoch
    assert steps == 1438 // 32
    labels = np.concatenate([loader.batch(s)["label"] for s in range(steps)])
    train, _ = sources.digits()
    counts = np.bincount(labels, minlength=10)
    assert len(labels) == steps * 32
    assert np.all(counts <= np.bincount(train.labels, minlength=10))


def test_processes_split_the_global_batch():
    c = config(augment="none")
    whole, _, _, _ = data.build(c)
    halves = [data.build(c, process_index=i, process_count=2)[0].batch(3) for i in range(2)]
    merged = np.concatenate([h["label"] for h in halves])
    np.testing.assert_array_equal(np.sort(merged), np.sort(whole.batch(3)["label"]))
    assert halves[0]["image"].shape[0] == 16


def test_eval_batches_cover_every_example_once_with_mask():
    _, eval_iter, _, n = data.build(config())
    batches = list(eval_iter())
    assert all(b["image"].shape[0] == 40 for b in batches)
    assert sum(int(b["mask"].sum()) for b in batches) == n == 359
    assert not batches[-1]["mask"][-1]
    _, test = sources.digits()
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, test.labels)


def test_upsample_for_imagenet_models_on_digits():
    loader, _, _, _ = data.build(config(image_size=32))
    assert loader.batch(0)["image"].shape == (32, 32, 32, 1)


def test_tfds_through_mock_data():
    with tfds.testing.mock_data(num_examples=64):
        loader, eval_iter, meta, n = data.build(config(dataset="cifar10", batch_size=16))
        batch = loader.batch(1)
        assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.float32
        assert batch["label"].dtype == np.int32 and meta.num_classes == 10
        assert n == 64 and sum(int(b["mask"].sum()) for b in eval_iter()) == 64


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(
        data.DatasetNotFoundError,
        match=r"(?s)not prepared.*tfds build cifar10"
        r".*--config.data_dir=DIR.*:runlocal",
    ):
        data.build(config(dataset="cifar10", data_dir=str(tmp_path)))


def test_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar11'\. Available: cifar10, "):
        data.build(config(dataset="cifar11"))
    with pytest.raises(ValueError, match="Unknown augment 'mixup'"):
        data.build(config(augment="mixup"))
    with pytest.raises(ValueError, match="larger than the training set"):
        pipeline.TrainLoader(sources.fake(4, (2, 2, 1), 2), 8, 0, lambda b, r: b)

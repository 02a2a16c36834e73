"""The grain input pipeline (batches by step from threads or worker processes, a JSON-able
checkpoint state), encoded JPEG records through worker processes, and process slices."""

import functools
import json

import numpy as np
import pytest

from bnnlab import config_lib, data
from bnnlab.data import augment, pipeline, sources

from jpegs import jpeg


def digits_loader(batch_size=32):
    c = config_lib.base()
    config_lib.runlocal(c)
    c.batch_size = batch_size
    loader, _, _, _ = data.build(c)
    return loader


def assert_same_batch(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_in_step_order_and_resumable_from_their_state(workers):
    loader = digits_loader()
    it = loader.iterate(5, workers=workers)
    try:
        for step in (5, 6, 7):
            assert_same_batch(next(it), loader.batch(step))
        state = json.loads(json.dumps(it.get_state()))  # what the checkpoint stores
    finally:
        it.close()
    assert state["step"] == 8 and state["workers"] == workers
    # The same worker count resumes through grain's state, another one from the step alone.
    for resume_workers in (workers, 1 - min(workers, 1)):
        resumed = loader.iterate(0, workers=resume_workers, state=state)
        try:
            assert_same_batch(next(resumed), loader.batch(8))
            assert_same_batch(next(resumed), loader.batch(9))
            assert resumed.get_state()["step"] == 10
        finally:
            resumed.close()


def test_a_state_from_another_run_is_refused():
    loader = digits_loader()
    state = {"step": 12, "start_step": 5, "workers": 0, "grain": {"next_index": 3}}
    it = loader.iterate(0, workers=0, state=state)  # grain would serve step 8, not 12
    try:
        with pytest.raises(RuntimeError, match="served the batch of step 8 where step 12"):
            next(it)
    finally:
        it.close()


def test_worker_count():
    assert pipeline.resolve_workers(3) == 3 == pipeline.resolve_workers(3, decodes=False)
    assert 0 <= pipeline.resolve_workers(-1) <= pipeline.MAX_AUTO_WORKERS
    assert pipeline.resolve_workers(-1, decodes=False) == 0  # in-memory arrays: no workers
    c = config_lib.base()
    c.data_workers = -2
    with pytest.raises(ValueError, match=r"data_workers = -2: .* or -1 \(one per CPU core"):
        config_lib.validate(c)


def test_encoded_source_through_worker_processes():
    """Encoded records (as TfdsSource returns ImageNet's) decoded and augmented in workers."""

    source = sources.ArraySource(
        np.array([jpeg(96, 128, i, quality=80) for i in range(8)], dtype=object),
        np.arange(8, dtype=np.int32),
    )
    preprocess = functools.partial(augment.train_augment, augment="imagenet", image_size=32)
    finish = functools.partial(augment.finish, normalization="imagenet")
    loader = pipeline.TrainLoader(source, 4, 0, preprocess, finish=finish)
    assert loader._augmented(0)["image"].dtype == np.uint8  # what the workers send
    whole = functools.partial(
        augment.train_preprocess, augment="imagenet", normalization="imagenet", image_size=32
    )
    np.testing.assert_array_equal(
        loader.batch(2)["image"], pipeline.TrainLoader(source, 4, 0, whole).batch(2)["image"]
    )
    it = loader.iterate(0, workers=1)
    try:
        for step in range(3):
            assert_same_batch(next(it), loader.batch(step))
    finally:
        it.close()


def test_process_slices_of_an_augmented_batch_equal_the_whole_batch():
    """Two processes' halves of a global batch, augmented, are the single process's batch:
    same examples in the same places, same crops and flips (the random draws are the global
    batch's, not the process's)."""
    c = config_lib.base()
    config_lib.runlocal(c)
    c.batch_size, c.augment = 32, "crop_flip"
    whole = data.build(c)[0].batch(3)
    halves = [data.build(c, process_index=i, process_count=2)[0].batch(3) for i in range(2)]
    for key in ("image", "label"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])

"""Example sources: the embedded digits' fixed split and statistics, and fake data."""

import numpy as np

from bnnlab.data import augment, sources


def test_digits_fixed_split():
    train, test = sources.digits()
    assert (len(train), len(test)) == (1438, 359)
    again_train, _ = sources.digits()
    np.testing.assert_array_equal(train.labels, again_train.labels)
    assert train.images.shape[1:] == (8, 8, 1) and 0 <= train.images.min() < train.images.max() <= 1
    assert set(np.unique(test.labels)) == set(range(10))
    mean, std = augment.NORMALIZATIONS["digits"]
    np.testing.assert_allclose(
        [train.images.mean(), train.images.std()], [mean[0], std[0]], atol=1e-4
    )


def test_fake_source_is_seeded_uint8_images_and_labels():
    fake = sources.fake(6, (4, 5, 3), num_classes=3, seed=7)
    assert len(fake) == 6 and fake.images.shape == (6, 4, 5, 3)
    assert fake.images.dtype == np.uint8 and fake.labels.dtype == np.int32
    assert set(np.unique(fake.labels)) <= {0, 1, 2}
    np.testing.assert_array_equal(fake.images, sources.fake(6, (4, 5, 3), 3, seed=7).images)
    assert not np.array_equal(fake.images, sources.fake(6, (4, 5, 3), 3, seed=8).images)
    batch = fake.get(np.array([4, 1]))
    np.testing.assert_array_equal(batch["image"], fake.images[[4, 1]])
    np.testing.assert_array_equal(batch["label"], fake.labels[[4, 1]])


def test_pydoc_windows_are_next_byte_pairs_and_hold_out_whole_topics():
    from bnnlab.data import sources

    train, test = sources.pydoc(32)
    topics = sources.pydoc_topics()
    assert len(topics) == 79
    text = b"".join(topics.values())
    for split in (train, test):
        batch = split.get(np.arange(3))
        assert batch["image"].shape == (3, 32) and batch["label"].shape == (3, 32)
        np.testing.assert_array_equal(batch["image"][:, 1:], batch["label"][:, :-1])
        # Consecutive windows continue each other: the next window starts at this one's label.
        np.testing.assert_array_equal(batch["image"][1:, 0], batch["label"][:-1, -1])
    first = bytes(test.get([0])["image"][0].astype(np.uint8))
    assert first in text
    held_out = [n for n, t in topics.items() if first in t]
    train_text = bytes(train.images.astype(np.uint8).ravel())
    assert held_out and all(topics[n][:64] not in train_text for n in held_out)
    assert 0.04 < len(test) / (len(train) + len(test)) < 0.3

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

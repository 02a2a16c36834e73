"""The demo's data split and rules: 1,437/360 digits drawn from the seed, and the rule-binarized
CNN with the float CNN's parameter tree and ±1 convs everywhere but the first conv."""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import datasets

import bnnlab
from bnnlab import demo


def rows(images):
    """The images as a sorted list of rows (the split as a multiset of images)."""
    flat = images.reshape(len(images), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_split_is_80_20_of_all_digits_and_follows_the_seed():
    (train_x, train_y), (test_x, test_y) = demo.load_digits(0)
    assert (len(train_y), len(test_y)) == (1437, 360)  # ⌊0.8 · 1797⌋ and the rest
    everything, labels = datasets.load_digits(return_X_y=True)
    together = np.concatenate([train_x, test_x])
    np.testing.assert_array_equal(rows(together), rows(everything.reshape(-1, 8, 8, 1) / 16.0))
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([train_y, test_y])), np.bincount(labels)
    )
    (_, _), (_, other_test_y) = demo.load_digits(1)
    assert not np.array_equal(test_y, other_test_y)


def test_rules_binarize_the_inner_convs_only():
    x = jnp.zeros((2, 8, 8, 1))
    float_model = demo.SmallCNN()
    binary_model = bnnlab.quantize_model(float_model, demo.RULES)
    init = lambda model: jax.eval_shape(lambda: model.init(jax.random.key(0), x))  # noqa: E731
    assert jax.tree.structure(init(float_model)) == jax.tree.structure(init(binary_model))
    found = bnnlab.layers.inventory.find(binary_model, x)
    assert sorted(found) == ["Conv_1", "Conv_2", "Conv_3"]
    ste = bnnlab.quant.SteSign()
    for layer in found.values():
        assert layer.kernel_quantizer == ste and layer.input_quantizer == ste

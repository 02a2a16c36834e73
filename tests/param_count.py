"""Parameter counts of model-zoo models, for the tests that check them against hand counts."""

import jax
import jax.numpy as jnp


def count(model, size, train=True):
    """Number of parameters ``model`` creates for (2, size, size, 3) inputs (no compute)."""
    v = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.ones((2, size, size, 3)), train=train)
    )
    return sum(x.size for x in jax.tree.leaves(v["params"]))


def conv3(cin, cout):
    """Parameters of a bias-free 3×3 conv from ``cin`` to ``cout`` channels."""
    return 9 * cin * cout

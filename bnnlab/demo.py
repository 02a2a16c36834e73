"""Demo: binarize an ordinary Flax CNN by rules and train it on the embedded digits data.

    python -m bnnlab.demo [--epochs=15]

The CNN below is plain Flax with no bnnlab code in it. ``bnnlab.quantize_model`` keeps its
first conv and its classifier in float and gives every other conv ±1 weights and ±1 inputs
(sign with the straight-through estimator); the parameter tree is unchanged, so the float and
the binary model share one ``init``. Data: scikit-learn's 8×8 handwritten digits (1,797
images, shipped inside scikit-learn, no download), split 80/20 by a permutation drawn from
``--seed``: 1,437 train / 360 test images (⌊0.8 · 1,797⌋ train). This is the demo's own split,
not the fixed 1,438/359 one of ``bnnlab.data``'s ``digits`` that the recipes' ``:runlocal``
variants train on.
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from sklearn import datasets

import bnnlab

flags.DEFINE_integer("epochs", 15, "Training epochs for each model.")
flags.DEFINE_integer("seed", 0, "Seed for init, data order and the train/test split.")
FLAGS = flags.FLAGS


class SmallCNN(nn.Module):
    """An ordinary Flax CNN (BatchNorm before each inner conv, as BNNs like it)."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(32, (3, 3))(x)))
        for features in (64, 64, 128):
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.relu(nn.Conv(features, (3, 3))(x))
        return nn.Dense(10)(x.mean((1, 2)))


RULES = [
    bnnlab.Rule("Conv_0"),  # first layer stays float, as in every BNN paper
    bnnlab.Rule("Dense_0"),  # so does the classifier
    bnnlab.Rule("Conv_.*", kernel="ste_sign", inputs="ste_sign"),
]


def load_digits(seed: int = 0):
    images, labels = datasets.load_digits(return_X_y=True)
    images = (images.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(labels))
    split = int(0.8 * len(labels))
    train, test = order[:split], order[split:]
    return (images[train], labels[train]), (images[test], labels[test])


def train_and_evaluate(model, train, test, epochs: int, seed: int, batch: int = 64) -> float:
    variables = model.init(jax.random.key(seed), train[0][:batch])
    tx = optax.adam(optax.cosine_decay_schedule(3e-3, epochs * (len(train[1]) // batch)))
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    @jax.jit
    def step(state, x, y):
        params, batch_stats, opt_state = state

        def loss_fn(p):
            logits, updates = model.apply(
                {"params": p, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        changes, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, changes), updates["batch_stats"], opt_state), loss

    @jax.jit
    def predict(params, batch_stats, x):
        return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(train[1]))
        for i in range(len(order) // batch):
            idx = order[i * batch : (i + 1) * batch]
            state, _ = step(state, train[0][idx], train[1][idx])
    logits = predict(state[0], state[1], test[0])
    return float(jnp.mean(jnp.argmax(logits, -1) == test[1]))


def main(argv):
    del argv  # Unused.
    train, test = load_digits(FLAGS.seed)
    float_model = SmallCNN()
    binary_model = bnnlab.quantize_model(float_model, RULES)
    x = train[0][:2]
    same = jax.tree.structure(float_model.init(jax.random.key(0), x)) == jax.tree.structure(
        binary_model.init(jax.random.key(0), x)
    )
    print(f"digits: {len(train[1])} train / {len(test[1])} test images, 8x8")
    print(f"binary model has the float model's parameter tree: {same}")
    print("binarized layers:", ", ".join(sorted(bnnlab.layers.inventory.find(binary_model, x))))
    for name, model in (("float", float_model), ("binary (1-bit W/A)", binary_model)):
        start = time.time()
        accuracy = train_and_evaluate(model, train, test, FLAGS.epochs, FLAGS.seed)
        print(f"{name:>20}: test accuracy {accuracy:.2%}  ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    app.run(main)

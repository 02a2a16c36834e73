"""The pure steps against closed forms: the losses, the state, extra variable collections."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bnnlab.train import schedule, steps


def test_distillation_loss_is_soft_cross_entropy():
    s = jnp.array([[1.0, 2.0, 0.5]])
    t = jnp.array([[0.2, 0.1, 3.0]])
    p = np.exp(t) / np.exp(t).sum()
    expected = -(p * (s - np.log(np.exp(s).sum()))).sum()
    np.testing.assert_allclose(steps.distillation_loss(s, t), expected, rtol=1e-6)


def test_cross_entropy_with_smoothing():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    log_p = np.asarray(jax.nn.log_softmax(logits))[0]
    target = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    np.testing.assert_allclose(
        steps.cross_entropy(logits, jnp.array([0]), 0.1), -(target * log_p).sum(), rtol=1e-6
    )


class Shifted(nn.Module):
    """A linear model whose output is shifted by a read-only ``task`` variable, as the
    reconfigurable model reads its permutations."""

    @nn.compact
    def __call__(self, x, train=False, progress=None):
        shift = self.variable("task", "shift", lambda: jnp.zeros(2)).value
        return nn.Dense(2, use_bias=False, kernel_init=nn.initializers.ones)(x) + shift


def test_train_step_reads_extra_collections_and_reports_the_schedule():
    model, x = Shifted(), jnp.ones((4, 3))
    tx = optax.sgd(0.5)
    state = steps.init_state(model, tx, jax.random.key(0), x)
    clock = schedule.Schedule(2, 8, "step", lambda step: 0.5)
    batch = {"image": x, "label": jnp.zeros(4, jnp.int32)}
    new, metrics = steps.train_step(
        state,
        batch,
        {"task": {"shift": jnp.array([0.0, 10.0])}},
        model=model,
        tx=tx,
        schedule=clock,
        layers={},
    )
    # Logits (3, 13): softmax puts ~1 on class 1, so ∂L/∂W[:, 0] = −1 per example and
    # ∂L/∂W[:, 1] = +1: SGD with lr 0.5 moves the columns by +0.5 and −0.5.
    p1 = 1 / (1 + np.exp(-10.0))
    expected = np.ones((3, 2)) + 0.5 * np.array([1 - (1 - p1), -p1])
    np.testing.assert_allclose(new.params["Dense_0"]["kernel"], expected, rtol=1e-5)
    assert int(new.step) == 1 and float(metrics["lr"]) == 0.5
    assert float(metrics["progress"]) == 0.0  # step 0 of 8
    np.testing.assert_allclose(metrics["loss"], np.log1p(np.exp(10.0)), rtol=1e-5)


def test_eval_step_counts_every_token_of_a_sequence_model():
    class Fixed(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            del train
            return jax.nn.one_hot(x.astype(jnp.int32), 4) * 10.0  # predicts its input

    tokens = jnp.asarray([[0, 1, 2], [3, 3, 3]], jnp.float32)
    labels = jnp.asarray([[0, 1, 0], [3, 0, 0]])
    state = steps.TrainState(jnp.int32(0), {}, {}, {}, None)
    mask = jnp.asarray([True, False])  # the second sequence is padding
    sums = steps.eval_step(state, {"image": tokens, "label": labels, "mask": mask}, model=Fixed())
    assert float(sums["count"]) == 3.0 and float(sums["correct"]) == 2.0
    want = optax.softmax_cross_entropy_with_integer_labels(
        jax.nn.one_hot(tokens[0].astype(jnp.int32), 4) * 10.0, labels[0]
    ).sum()
    np.testing.assert_allclose(sums["loss_sum"], want, rtol=1e-6)

"""The reconfigurable model: bit-exact task switching without retracing, per-task BatchNorm,
per-task logit slices, and the storage claim (keyed layers: layers_test.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab.reconfig import keys, model, tasks

ROOT = bytes(range(32))
TASKS = tasks.parse(("digits", "digits:pixels", "digits:labels"))


def build(num_tasks=3):
    net = model.ReconfigurableReActNet(
        num_tasks=num_tasks, max_classes=10, stage_sizes=(1, 1), stage_features=(8, 16)
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), jnp.float32)
    variables = net.init(jax.random.key(0), x, train=True)
    return net, x, variables


def task_vars(template, task, user=b"alice"):
    return tasks.task_variables(template, task, keys.task_seed(ROOT, user, task.task_id))


def test_switching_tasks_is_bit_exact_and_does_not_retrace():
    net, x, variables = build()
    template = variables["task"]
    vars_a, vars_b = task_vars(template, TASKS[0]), task_vars(template, TASKS[1])
    base = {"params": variables["params"], "batch_stats": variables["batch_stats"]}

    @jax.jit
    @chex.assert_max_traces(n=1)
    def forward(task_variables):
        return net.apply({**base, "task": task_variables}, x, train=False)

    chex.clear_trace_counter()
    a1, b, a2 = forward(vars_a), forward(vars_b), forward(vars_a)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, b)


def test_per_task_batch_norm_updates_only_its_row():
    net, x, variables = build()
    template = variables["task"]
    _, updated = net.apply(
        {**variables, "task": task_vars(template, TASKS[1])},
        x * 3 + 1,
        train=True,
        mutable=["batch_stats"],
    )
    before = variables["batch_stats"]["stem_bn"]["mean"]
    after = updated["batch_stats"]["stem_bn"]["mean"]
    after, before = np.asarray(after), np.asarray(before)
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    assert not np.allclose(after[1], before[1])


def test_logits_are_sliced_per_task():
    net, x, variables = build()
    four = tasks.Task("task0", "digits", "", 4, index=0)
    out = net.apply({**variables, "task": task_vars(variables["task"], four)}, x)
    assert (np.asarray(out)[:, 4:] <= -1e8).all() and np.isfinite(np.asarray(out)[:, :4]).all()


def test_storage_is_one_set_of_weights_plus_per_task_batch_norm():
    from bnnlab.reconfig import trainer

    _, _, joint = build(num_tasks=3)
    _, _, single = build(num_tasks=1)
    count = lambda v: sum(a.size for a in jax.tree.leaves(v["params"]))  # noqa: E731
    per_task = trainer.per_task_parameters(single["params"])
    assert count(joint) - count(single) == 2 * per_task  # only BN γ, β grow with M
    sizes = trainer.storage(joint["params"], 3)
    assert sizes["total_bytes"] == sizes["shared_bytes"] + 3 * sizes["per_task_bytes"]
    assert sizes["separate_models_bytes"] == pytest.approx(
        3 * (sizes["shared_bytes"] + sizes["per_task_bytes"])
    )
    assert sizes["total_bytes"] < 0.5 * sizes["separate_models_bytes"]

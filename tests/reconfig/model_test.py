"""The reconfigurable model: bit-exact task switching without retracing, per-task BatchNorm,
per-task logit slices, and the storage claim (keyed layers: layers_test.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab.reconfig import keys, layers, model, tasks

ROOT = bytes(range(32))
USER = b"alice's user key"
TASKS = tasks.parse(("digits", "digits:pixels", "digits:labels"))


def build(num_tasks=3):
    net = model.ReconfigurableReActNet(
        num_tasks=num_tasks, max_classes=10, stage_sizes=(1, 1), stage_features=(8, 16)
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), jnp.float32)
    variables = net.init(jax.random.key(0), x, train=True)
    return net, x, variables


def task_vars(template, task, user=USER):
    material = keys.KeyMaterial(user, ROOT)
    return tasks.task_collections(template, [task], material)[0]["task"]


def test_masked_rows_start_from_the_ordinary_initialisation():
    """Under the right keys the masked initial rows read as γ = 1, β = 0, the running mean 0
    and variance 1, RSign 0, RPReLU (0, 0.25, 0), head bias 0: the model computes what the
    unmasked one does. Under another user's keys the rows read as noise."""
    net, x, variables = build()
    right = [task_vars(variables["task"], t) for t in TASKS]
    masked = layers.mask_initial(variables, right)
    stored = masked["params"]["stem_bn"]["scale"]
    assert not np.allclose(stored, 1.0) and np.abs(stored - 1.0).max() <= 2.0
    unmasked = jax.tree.map(jnp.zeros_like, right[1])
    for k in ("perm", "index", "num_classes"):  # same permutations and row, masks zero
        unmasked = _copy_entries(unmasked, right[1], k)
    plain = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    ref = net.apply({**plain, "task": unmasked}, x, train=False)
    got = net.apply({**masked, "task": right[1]}, x, train=False)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    wrong = task_vars(variables["task"], TASKS[1], user=b"mallory's user key")
    bad = net.apply({**masked, "task": wrong}, x, train=False)
    assert np.abs(np.asarray(bad) - np.asarray(ref))[:, :10].mean() > 0.1


def _copy_entries(target, source, name):
    from flax import traverse_util

    t = traverse_util.flatten_dict(target, sep="/")
    src = traverse_util.flatten_dict(source, sep="/")
    t.update({k: v for k, v in src.items() if k.endswith(name)})
    return traverse_util.unflatten_dict(t, sep="/")


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

"""Building an experiment: one abstract trace of the model, tasks trained round robin."""

import flax.linen as nn
import jax
import numpy as np

from bnnlab.train import experiment

import recipes


def test_build_traces_the_model_once():
    calls = []

    def count(next_fun, args, kwargs, context):
        if not context.module.path and context.method_name == "__call__":
            calls.append(context.module)
        return next_fun(*args, **kwargs)

    config = recipes.config("smoke")
    with nn.intercept_methods(count):
        exp = experiment.build(config)
    assert len(calls) == 1  # inventory.scan: layers, adder layers and shapes at once
    assert exp.layers and exp.abstract_state.params
    assert exp.total_steps == config.total_steps


def test_tasks_alternate_by_step():
    config = recipes.config("smoke")
    exp = experiment.build(config)
    other = experiment.Task("b", exp.tasks[0].loader, exp.tasks[0].eval_batches)
    two = experiment.Experiment(**{**vars(exp), "tasks": (exp.tasks[0], other)})
    assert [two.task_of(s).name for s in range(5)] == ["", "b", "", "b", ""]
    batch = exp.device_batch(exp.tasks[0].loader.batch(0))
    assert np.asarray(batch["image"]).shape[0] == config.batch_size
    assert len(jax.tree.leaves(exp.abstract_state.tracking)) > 0  # smoke tracks its binary layers

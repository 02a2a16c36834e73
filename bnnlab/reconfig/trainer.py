"""Round-robin joint training of a reconfigurable BNN (docs/reconfigurable.md): step s takes
one batch of task t = s mod M under that task's keys and makes one optimizer step.

The training loop, steps, checkpoints (exact resume), metrics and diagnostics are the common
ones (``bnnlab.train``); this module supplies only the tasks: their data and the ``task``
collection (permutations, BatchNorm row, class count) that selects each. The keys are
arguments, never config: neither checkpoints nor metrics nor ``config.json`` contain them;
the workdir holds only their check value (``guard``).
"""

from __future__ import annotations

import logging

import jax
from flax import traverse_util

from bnnlab import config_lib, runs
from bnnlab.reconfig import guard, layers
from bnnlab.reconfig import keys as keys_lib
from bnnlab.reconfig import tasks as tasks_lib
from bnnlab.train import experiment, loop, steps


def per_task_parameters(params) -> int:
    """Parameters that exist once per task: the BatchNorm rows (γ and β)."""
    flat = traverse_util.flatten_dict(params, sep="/")
    return sum(v.size // v.shape[0] for k, v in flat.items() if k.endswith(("bn/scale", "bn/bias")))


def storage(params, num_tasks: int) -> dict[str, float]:
    """Bytes to store the model deployed (binary latents as packed signs, the rest float32),
    against ``num_tasks`` separately trained models of the same architecture."""
    flat = traverse_util.flatten_dict(params, sep="/")
    binary = sum(v.size for k, v in flat.items() if k.endswith("/conv/latent") and "block" in k)
    per_task = per_task_parameters(params)
    float_shared = sum(v.size for v in flat.values()) - binary - num_tasks * per_task
    shared_bytes = binary / 8 + 4 * float_shared
    one_task = shared_bytes + 4 * per_task
    return {
        "shared_bytes": shared_bytes,
        "per_task_bytes": 4 * per_task,
        "total_bytes": shared_bytes + 4 * per_task * num_tasks,
        "separate_models_bytes": num_tasks * one_task,
    }


def _check(config) -> None:
    unsupported = {
        "label_smoothing": config.label_smoothing,  # would put mass on other tasks' classes
        "teacher_workdir": config.teacher_workdir,
        # The keyed rows are stored masked (layers): decay would pull the stored values, not
        # the rows, towards 0.
        "weight_decay": config.weight_decay,
    }
    for name, value in unsupported.items():
        if value:
            raise ValueError(
                f"config.{name} = {value!r}: the reconfigurable trainer does not support it "
                "(leave it unset)."
            )


def build(config, key_material: keys_lib.KeyMaterial, devices=None) -> experiment.Experiment:
    """The common experiment for the reconfigurable model: one task per ``config.reconfig``
    task, each with its own loader (seeded per task) and keyed ``task`` collection."""
    config_lib.validate(config)
    _check(config)
    tasks = tasks_lib.parse(config.reconfig.tasks)
    model = runs.model_from_ref(runs.model_ref(config))
    mesh = experiment.make_mesh(config, devices)
    loaders, evals = tasks_lib.build_data(config, tasks, jax.process_index(), jax.process_count())
    parts = [
        experiment.Task(t.task_id, loader, ev, encoded_images=False)
        for t, loader, ev in zip(tasks, loaders, evals, strict=True)
    ]
    return experiment.assemble(
        config,
        mesh,
        model,
        parts,
        steps_per_epoch=len(tasks) * min(loader.steps_per_epoch for loader in loaders),
        describe=_describe,
        collections=lambda variables: tasks_lib.task_collections(
            variables["task"], tasks, key_material
        ),
        loss_fn=steps.integer_cross_entropy,  # logits of other tasks' classes are masked
        initialize=lambda variables, collections: layers.mask_initial(
            variables, [c["task"] for c in collections]
        ),
    )


def _describe(exp: experiment.Experiment) -> None:
    sizes = storage(exp.abstract_state.params, len(exp.tasks))
    logging.info(
        "Reconfigurable %s with %d tasks: %.1f kB shared + %.1f kB per task deployed = %.1f kB, "
        "vs %.1f kB for %d separate models; %d steps (%d per epoch), mesh %s",
        type(exp.model).__name__,
        len(exp.tasks),
        sizes["shared_bytes"] / 1e3,
        sizes["per_task_bytes"] / 1e3,
        sizes["total_bytes"] / 1e3,
        sizes["separate_models_bytes"] / 1e3,
        len(exp.tasks),
        exp.total_steps,
        exp.steps_per_epoch,
        dict(exp.mesh.shape),
    )


def train_and_evaluate(
    config, workdir, key_material: keys_lib.KeyMaterial | None = None, stop_at: int | None = None
) -> dict:
    """Trains all tasks of ``config.reconfig.tasks`` round robin; returns the final eval
    (``accuracy/<task id>``, ``loss/<task id>`` and their means). A new workdir records the
    keys' check value; resuming with other keys is refused (``guard.WrongKeys``)."""
    if key_material is None:
        key_material = keys_lib.load(demo=config.reconfig.demo_keys)
    # A valid config first (so no key record is written for a run that cannot start), then
    # the keys, before build derives every task's permutations and loads the data.
    config_lib.validate(config)
    _check(config)
    guard.check_workdir(workdir, key_material)
    return loop.run(build(config, key_material), workdir, stop_at)

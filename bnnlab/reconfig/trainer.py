"""Round-robin joint training of a reconfigurable BNN (spec §3.2): each step takes one batch of
one task, under that task's keys, and makes one optimizer step; task t = step mod M.

Same contract as ``bnnlab.train.train_and_evaluate``: validated config, sharded jitted steps,
orbax checkpoints with exact resume, JSON-lines metrics (per task). The keys are arguments,
never config: neither checkpoints nor metrics nor ``config.json`` contain them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization, traverse_util

from bnnlab import config_lib, data
from bnnlab.reconfig import keys as keys_lib
from bnnlab.reconfig import model as model_lib
from bnnlab.reconfig import tasks as tasks_lib
from bnnlab.train import checkpoint, metrics, optim, sharding, steps
from bnnlab.train import workdir as workdir_lib


def build_model(config, tasks) -> model_lib.ReconfigurableReActNet:
    if config.model_name != "rbnn_reactnet":
        raise ValueError(
            f"The reconfig trainer builds 'rbnn_reactnet' (the reconfigurable ReActNet), "
            f"got config.model_name = {config.model_name!r}."
        )
    return model_lib.ReconfigurableReActNet(
        num_tasks=len(tasks),
        max_classes=max(t.num_classes for t in tasks),
        **config.model.to_dict(),
    )


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


@dataclasses.dataclass
class Run:
    """A reconfigurable model with its trained variables, for evaluation and prediction."""

    config: Any
    tasks: list
    model: Any
    variables: dict
    template: dict

    def __post_init__(self):
        self._eval_sums = jax.jit(functools.partial(_eval_sums, model=self.model))

    def task_variables(self, task_id: str, key_material: keys_lib.KeyMaterial) -> dict:
        task = tasks_lib.lookup(self.tasks, task_id)
        return tasks_lib.task_variables(self.template, task, key_material.seed(task_id))

    def predict(self, images, task_id: str, key_material: keys_lib.KeyMaterial):
        """Logits of ``task_id`` (its first C_t classes are meaningful) under the keys."""
        variables = {**self.variables, "task": self.task_variables(task_id, key_material)}
        return self.model.apply(variables, images, train=False)

    def export(self, path) -> pathlib.Path:
        """Writes the deployable model: the shared latent weights and the per-task BatchNorm
        rows (``.npz``) plus a JSON manifest (architecture, task ids and class counts). It holds
        no key material: a task is selected only by the keys given at run time."""
        path = pathlib.Path(path)
        path.mkdir(parents=True, exist_ok=True)
        flat = traverse_util.flatten_dict(
            {"params": self.variables["params"], "batch_stats": self.variables["batch_stats"]},
            sep="/",
        )
        np.savez_compressed(path / "model.npz", **{k: np.asarray(v) for k, v in flat.items()})
        manifest = {
            "architecture": "rbnn_reactnet",
            "model": self.config.model.to_dict(),
            "image_size": self.config.image_size,
            "tasks": [{"id": t.task_id, "classes": t.num_classes} for t in self.tasks],
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return path

    def evaluate(self, task_id: str, key_material: keys_lib.KeyMaterial) -> float:
        """Test accuracy of ``task_id`` under the keys."""
        tasks_lib.lookup(self.tasks, task_id)
        _, evals = tasks_lib.build_data(self.config, self.tasks)
        task_vars = self.task_variables(task_id, key_material)
        fn = self._eval_sums
        state = {"params": self.variables["params"], "batch_stats": self.variables["batch_stats"]}
        totals = np.zeros(3)
        for batch in evals[int(task_id[4:])]():
            totals += np.asarray(jax.device_get(fn(state, batch, task_vars)))
        return float(totals[0] / max(totals[2], 1))


def _eval_sums(variables, batch, task_vars, *, model):
    logits = model.apply({**variables, "task": task_vars}, batch["image"], train=False)
    mask = batch["mask"].astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]) * mask
    return jnp.stack([jnp.sum(correct), jnp.sum(loss * mask), jnp.sum(mask)])


def _train_step(
    state: steps.TrainState,
    batch,
    task_vars,
    *,
    model,
    tx,
    lr_fn,
    steps_per_epoch,
    total_steps,
    schedule_unit,
):
    progress = steps.training_progress(state.step, steps_per_epoch, total_steps, schedule_unit)

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats, "task": task_vars},
            batch["image"],
            train=True,
            progress=progress,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    changes, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, changes),
        batch_stats=updates["batch_stats"],
        opt_state=opt_state,
    )
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return new_state, {"loss": loss, "accuracy": accuracy, "lr": lr_fn(state.step)}


def load(workdir, step: int | None = None) -> Run:
    """A trained reconfigurable run from its workdir (keys are supplied per call)."""
    config = workdir_lib.load_config(workdir)
    tasks = tasks_lib.parse(config.reconfig.tasks)
    model = build_model(config, tasks)
    ckpts = checkpoint.Checkpoints(workdir, keep=config.keep_checkpoints)
    try:
        tree, _ = ckpts.restore_raw(step)
    finally:
        ckpts.close()
    shape = _input_shape(config, tasks)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape))))
    template = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), template["task"])
    variables = {"params": tree["params"], "batch_stats": tree["batch_stats"]}
    return Run(config, tasks, model, variables, template)


def _input_shape(config, tasks) -> tuple[int, int, int]:
    h, w, _ = data.info(tasks[0].dataset).image_shape
    if config.image_size:
        h = w = config.image_size
    return h, w, max(data.info(t.dataset).image_shape[-1] for t in tasks)


def train_and_evaluate(
    config, workdir, key_material: keys_lib.KeyMaterial | None = None, stop_at: int | None = None
) -> dict:
    """Trains all tasks of ``config.reconfig.tasks`` round robin; returns per-task accuracy."""
    config_lib.validate(config)
    if key_material is None:
        key_material = keys_lib.load(demo=config.reconfig.demo_keys)
    tasks = tasks_lib.parse(config.reconfig.tasks)
    mesh = sharding.make_mesh(config.mesh)
    loaders, evals = tasks_lib.build_data(config, tasks, jax.process_index(), jax.process_count())
    num_tasks = len(tasks)
    steps_per_epoch = num_tasks * min(loader.steps_per_epoch for loader in loaders)
    total_steps = (
        config.total_steps if config.total_steps > 0 else config.num_epochs * steps_per_epoch
    )
    model = build_model(config, tasks)
    example = jnp.zeros((2, *loaders[0].batch(0)["image"].shape[1:]), jnp.float32)
    rng = jax.random.key(config.seed)
    abstract = jax.eval_shape(lambda: model.init(rng, example, train=True))
    tx, lr_fn, _ = optim.create(config, abstract["params"], {}, steps_per_epoch, total_steps)

    def init(rng):
        variables = model.init(rng, example, train=True)
        return steps.TrainState(
            step=jnp.zeros((), jnp.int32),
            params=variables["params"],
            batch_stats=variables["batch_stats"],
            quant_state={},
            opt_state=tx.init(variables["params"]),
            diag={},
        )

    abstract_state = jax.eval_shape(init, rng)
    state_sharding = sharding.state_shardings(abstract_state, mesh)
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    template = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract["task"])
    task_vars = [
        jax.device_put(
            tasks_lib.task_variables(template, t, key_material.seed(t.task_id)), replicated
        )
        for t in tasks
    ]
    train_step = jax.jit(
        functools.partial(
            _train_step,
            model=model,
            tx=tx,
            lr_fn=lr_fn,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            schedule_unit=config.schedule_unit,
        ),
        in_shardings=(state_sharding, batch_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
    )
    eval_step = jax.jit(
        functools.partial(_eval_sums, model=model),
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=replicated,
    )

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints)
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        state_sharding,
    )
    restored, start_step = ckpts.restore_latest(serialization.to_state_dict(target))
    state = (
        jax.jit(init, out_shardings=state_sharding)(rng)
        if restored is None
        else serialization.from_state_dict(abstract_state, restored)
    )
    primary = jax.process_index() == 0
    writer = metrics.Writer(workdir, start_step, enabled=primary)
    if primary and start_step == 0:
        workdir_lib.save_config(config, workdir)
    sizes = storage(abstract_state.params, num_tasks)
    logging.info(
        "Reconfigurable %s with %d tasks: %.1f kB shared + %.1f kB per task deployed = %.1f kB, "
        "vs %.1f kB for %d separate models",
        type(model).__name__,
        num_tasks,
        sizes["shared_bytes"] / 1e3,
        sizes["per_task_bytes"] / 1e3,
        sizes["total_bytes"] / 1e3,
        sizes["separate_models_bytes"] / 1e3,
        num_tasks,
    )

    def evaluate_all() -> dict:
        out = {}
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        for t, task in enumerate(tasks):
            totals = np.zeros(3)
            for batch in evals[t]():
                totals += np.asarray(
                    jax.device_get(
                        eval_step(
                            variables, sharding.global_batch(batch, batch_sharding), task_vars[t]
                        )
                    )
                )
            out[f"accuracy/{task.task_id}"] = float(totals[0] / max(totals[2], 1))
            out[f"loss/{task.task_id}"] = float(totals[1] / max(totals[2], 1))
        out["accuracy"] = float(np.mean([out[f"accuracy/{t.task_id}"] for t in tasks]))
        return out

    end_step = total_steps if stop_at is None else min(stop_at, total_steps)
    window: dict[int, list] = {t: [] for t in range(num_tasks)}
    final, window_start, begin = {}, time.time(), start_step
    try:
        for step in range(start_step, end_step):
            t = step % num_tasks
            batch = sharding.global_batch(loaders[t].batch(step // num_tasks), batch_sharding)
            state, m = train_step(state, batch, task_vars[t])
            window[t].append(m)
            done = step + 1
            if done % config.log_every_steps == 0 or done == total_steps:
                record = {}
                for i, items in window.items():
                    host = jax.device_get(items)
                    for k in ("loss", "accuracy"):
                        if host:
                            record[f"{k}/{tasks[i].task_id}"] = float(np.mean([h[k] for h in host]))
                    if host:
                        record["lr"] = float(host[-1]["lr"])
                losses = [v for k, v in record.items() if k.startswith("loss/")]
                if not all(math.isfinite(v) for v in losses):
                    raise FloatingPointError(f"Non-finite loss in the steps up to {done}.")
                record["loss"] = float(np.mean(losses))
                record["step_time"] = (time.time() - window_start) / max(done - begin, 1)
                writer.write(done, "train", record)
                logging.info("step %d/%d: loss %.4f", done, total_steps, record["loss"])
                window, window_start, begin = {i: [] for i in range(num_tasks)}, time.time(), done
            epoch_end = done % steps_per_epoch == 0
            if done == total_steps or (
                epoch_end and (done // steps_per_epoch) % config.eval_every_epochs == 0
            ):
                final = evaluate_all()
                writer.write(done, "eval", final)
                logging.info(
                    "eval at step %d: %s",
                    done,
                    {k: round(float(v), 4) for k, v in final.items() if "accuracy" in k},
                )
            if done % config.checkpoint_every_steps == 0 or done in (total_steps, end_step):
                ckpts.save(done, serialization.to_state_dict(state))
        if start_step >= total_steps:
            final = evaluate_all()
    finally:
        ckpts.close()
        writer.close()
    return final

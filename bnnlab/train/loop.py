"""``train_and_evaluate(config, workdir)``: the whole training run, resumable at any checkpoint.

Order of work: validate the config and build data and model (so a bad key, an unknown name or a
missing dataset fails before any compute), restore the newest checkpoint if the workdir has one,
then train with one jitted, sharded, donated step per batch, logging, evaluating and
checkpointing on fixed step boundaries (so an interrupted and resumed run logs and saves exactly
what an uninterrupted one would).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from bnnlab import config_lib, data
from bnnlab.diagnostics import summary as summary_lib
from bnnlab.diagnostics import tracking
from bnnlab.layers import inventory
from bnnlab.train import checkpoint, metrics, optim, sharding, steps
from bnnlab.train import workdir as workdir_lib

TIMING_KEYS = ("step_time", "images_per_sec")
# Train metrics averaged over the logging window; everything else (lr, progress, τ, p, …) is a
# schedule value and is logged as it was at the logged step.
WINDOW_MEAN_KEYS = ("loss", "accuracy", "grad_norm", "param_norm")


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, built from a config without touching the workdir."""

    config: Any
    mesh: Any
    loader: Any
    eval_batches: Callable
    model: Any
    layers: dict
    tx: Any
    lr_fn: Callable
    steps_per_epoch: int
    total_steps: int
    example: jax.Array
    abstract_state: Any
    state_sharding: Any
    batch_sharding: Any
    train_step: Callable  # jitted (state, batch, teacher_variables) → (state, metrics)
    eval_step: Callable  # jitted (state, batch) → sums
    diagnostics_step: Callable | None  # jitted (state, batch) → (statistics, state)
    track_layers: dict | None
    teacher_variables: Any = None

    def init_state(self) -> steps.TrainState:
        init = functools.partial(
            steps.init_state, self.model, self.tx, track_layers=self.track_layers
        )
        rng = jax.random.key(self.config.seed)
        return jax.jit(init, out_shardings=self.state_sharding)(rng, self.example)

    def device_batch(self, batch: dict) -> dict:
        return sharding.global_batch(batch, self.batch_sharding)


def _check_divisible(name: str, batch: int, mesh) -> None:
    shards = math.prod(mesh.shape[a] for a in sharding.batch_axes(mesh))
    if batch % shards:
        raise ValueError(
            f"config.{name} = {batch} must be divisible by the {shards} devices the batch is "
            f"sharded over (mesh {dict(mesh.shape)})."
        )


def build(config, devices=None) -> Experiment:
    """Validates ``config`` and builds data, model, optimizer and the jitted, sharded steps."""
    config_lib.validate(config)
    mesh = sharding.make_mesh(config.mesh, devices)
    _check_divisible("batch_size", config.batch_size, mesh)
    _check_divisible("eval_batch_size", config.eval_batch_size, mesh)
    loader, eval_batches, meta, _ = data.build(config, jax.process_index(), jax.process_count())
    steps_per_epoch = loader.steps_per_epoch
    total_steps = (
        config.total_steps if config.total_steps > 0 else config.num_epochs * steps_per_epoch
    )
    model = workdir_lib.build_model(config, meta.num_classes)
    example = jnp.zeros((2, *loader.batch(0)["image"].shape[1:]), jnp.float32)
    layers = inventory.find(model, example, train=True)
    adder_paths = inventory.adder_layers(model, example, train=True)
    rng = jax.random.key(config.seed)
    abstract_params = jax.eval_shape(lambda: model.init(rng, example, train=True))["params"]
    tx, lr_fn, _ = optim.create(
        config, abstract_params, layers, steps_per_epoch, total_steps, adder_paths
    )
    diagnose = config.diagnostics_every_steps > 0 and bool(tracking.binary_layers(layers))
    track_layers = layers if diagnose else None
    abstract_state = jax.eval_shape(
        functools.partial(steps.init_state, model, tx, track_layers=track_layers), rng, example
    )
    state_sharding = sharding.state_shardings(abstract_state, mesh)
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)

    teacher, teacher_variables = None, None
    if config.teacher_workdir:
        teacher, teacher_variables, _, step = workdir_lib.load(config.teacher_workdir)
        teacher_variables = jax.device_put(teacher_variables, replicated)
        logging.info("Distilling from %s (step %d)", config.teacher_workdir, step)
    train_step = jax.jit(
        functools.partial(
            steps.train_step,
            model=model,
            tx=tx,
            lr_fn=lr_fn,
            layers=layers,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            schedule_unit=config.schedule_unit,
            label_smoothing=config.label_smoothing,
            teacher=teacher,
            distill_weight=config.distill_weight,
        ),
        in_shardings=(state_sharding, batch_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
    )
    eval_step = jax.jit(
        functools.partial(steps.eval_step, model=model),
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=replicated,
    )
    diagnostics_step = None
    if diagnose:
        diagnostics_step = jax.jit(
            functools.partial(
                steps.diagnostics_step,
                model=model,
                layers=layers,
                steps_per_epoch=steps_per_epoch,
                total_steps=total_steps,
                schedule_unit=config.schedule_unit,
            ),
            in_shardings=(state_sharding, batch_sharding),
            out_shardings=(replicated, state_sharding),
            donate_argnums=(0,),
        )
    return Experiment(
        config=config,
        mesh=mesh,
        loader=loader,
        eval_batches=eval_batches,
        model=model,
        layers=layers,
        tx=tx,
        lr_fn=lr_fn,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        example=example,
        abstract_state=abstract_state,
        state_sharding=state_sharding,
        batch_sharding=batch_sharding,
        train_step=train_step,
        eval_step=eval_step,
        diagnostics_step=diagnostics_step,
        track_layers=track_layers,
        teacher_variables=teacher_variables,
    )


def evaluate(exp: Experiment, state) -> dict:
    totals = {"correct": 0.0, "loss_sum": 0.0, "count": 0.0}
    for batch in exp.eval_batches():
        out = jax.device_get(exp.eval_step(state, exp.device_batch(batch)))
        for k in totals:
            totals[k] += float(out[k])
    count = max(totals["count"], 1.0)
    return {
        "accuracy": totals["correct"] / count,
        "loss": totals["loss_sum"] / count,
        "examples": int(totals["count"]),
    }


def _restore_or_init(exp: Experiment, ckpts: checkpoint.Checkpoints):
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        exp.abstract_state,
        exp.state_sharding,
    )
    restored, step = ckpts.restore_latest(serialization.to_state_dict(target))
    if restored is not None:
        return serialization.from_state_dict(exp.abstract_state, restored), step
    state = exp.init_state()
    if exp.config.init_from:
        state = _warm_start(exp, state, exp.config.init_from)
    return state, 0


def _warm_start(exp: Experiment, state, source: str):
    """Fresh state with the params and statistics of a trained workdir (fine-tuning)."""
    _, variables, _, step = workdir_lib.load(source)
    new = {}
    for collection in ("params", "batch_stats", "quant_state"):
        current = getattr(state, collection)
        loaded = variables.get(collection, {})
        want = jax.tree.map(lambda a: (a.shape, str(a.dtype)), current)
        got = jax.tree.map(lambda a: (a.shape, str(a.dtype)), loaded)
        if want != got:
            raise ValueError(
                f"config.init_from = {source!r}: its {collection} do not match this model "
                f"(model_name/model/quant must describe the same architecture)."
            )
        new[collection] = jax.device_put(loaded, jax.tree.map(lambda a: a.sharding, current))
    logging.info("Initialised from %s (step %d)", source, step)
    diag = state.diag
    if diag:
        diag = tracking.init_tracking(new["params"], exp.track_layers)
    return state.replace(**new, diag=diag)


def _progress_bar(config, primary: bool, total: int, initial: int):
    if not (config.progress_bar and primary and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step")


def train_and_evaluate(config, workdir: str | pathlib.Path, stop_at: int | None = None) -> dict:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final
    eval metrics.

    ``stop_at`` ends the run early at that step (after checkpointing it), as a pre-empted job
    would; running again continues from there.
    """
    exp = build(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints)
    state, start_step = _restore_or_init(exp, ckpts)
    data_state = ckpts.data_state(start_step) if start_step else None
    if data_state is not None and data_state.get("step") != start_step:
        # Batches are a pure function of the step, so starting at the checkpoint's step
        # serves the same data; a state that disagrees with it is not trusted.
        logging.warning(
            "The input pipeline state in checkpoint %d is for step %s; restarting the "
            "pipeline at step %d instead.",
            start_step,
            data_state.get("step"),
            start_step,
        )
        data_state = None
    primary = jax.process_index() == 0
    writer = metrics.Writer(workdir, start_step, enabled=primary)
    if primary and start_step == 0:
        workdir_lib.save_config(config, workdir)
    if primary:
        summary_lib.summary(exp.model, exp.example.shape[1:], print_fn=logging.info)
    total_steps, steps_per_epoch = exp.total_steps, exp.steps_per_epoch
    logging.info(
        "%s on %s: %d parameters, %d quantized layers, %d steps (%d per epoch), mesh %s",
        config.model_name,
        config.dataset,
        sum(x.size for x in jax.tree.leaves(exp.abstract_state.params)),
        sum(1 for layer in exp.layers.values() if layer.kernel_quantizer or layer.input_quantizer),
        total_steps,
        steps_per_epoch,
        dict(exp.mesh.shape),
    )
    end_step = total_steps if stop_at is None else min(stop_at, total_steps)
    if start_step >= total_steps:
        logging.info("Already trained to step %d; evaluating only.", start_step)
        end_step = start_step
    elif start_step == 0:
        logging.info("Initial compilation, this might take a minute.")

    progress_bar = _progress_bar(config, primary, total_steps, start_step)
    final = {}
    window, window_start, last_saved = [], time.time(), start_step
    workers = data.resolve_workers(config.data_workers, data.info(config.dataset).encoded_images)
    batches = exp.loader.iterate(start_step, workers=workers, state=data_state)
    try:
        for step in range(start_step, end_step):
            batch = exp.device_batch(next(batches))
            state, step_metrics = exp.train_step(state, batch, exp.teacher_variables)
            window.append(step_metrics)
            done = step + 1
            if progress_bar is not None:
                progress_bar.update(1)
            if done % config.log_every_steps == 0 or done == total_steps:
                host = jax.device_get(window)
                record = {
                    k: float(
                        np.mean([m[k] for m in host]) if k in WINDOW_MEAN_KEYS else host[-1][k]
                    )
                    for k in host[0]
                }
                if not math.isfinite(record["loss"]):
                    raise FloatingPointError(
                        f"Non-finite loss ({record['loss']}) in steps {done - len(window) + 1}"
                        f"–{done}; stopping. The last good checkpoint is step {last_saved} in "
                        f"{ckpts.directory}."
                    )
                elapsed = time.time() - window_start
                record["step_time"] = elapsed / len(window)
                record["images_per_sec"] = len(window) * config.batch_size / elapsed
                record["epoch"] = done / steps_per_epoch
                writer.write(done, "train", record)
                if progress_bar is not None:
                    progress_bar.set_postfix(
                        loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}"
                    )
                else:
                    logging.info(
                        "step %d/%d: loss %.4f, accuracy %.4f, lr %.4g, %.0f img/s",
                        done,
                        total_steps,
                        record["loss"],
                        record["accuracy"],
                        record["lr"],
                        record["images_per_sec"],
                    )
                window, window_start = [], time.time()
            if exp.diagnostics_step is not None and done % config.diagnostics_every_steps == 0:
                diagnostics, state = exp.diagnostics_step(state, batch)
                writer.write(done, "diagnostics", jax.device_get(diagnostics))
            end_of_epoch = done % steps_per_epoch == 0
            if done == total_steps or (
                end_of_epoch and (done // steps_per_epoch) % config.eval_every_epochs == 0
            ):
                final = {**evaluate(exp, state), "epoch": done / steps_per_epoch}
                writer.write(done, "eval", final)
                logging.info(
                    "eval at step %d: accuracy %.4f, loss %.4f",
                    done,
                    final["accuracy"],
                    final["loss"],
                )
            if done % config.checkpoint_every_steps == 0 or done in (total_steps, end_step):
                ckpts.save(done, serialization.to_state_dict(state), data=batches.get_state())
                last_saved = done
        if start_step >= total_steps:
            final = evaluate(exp, state)
    finally:
        batches.close()
        if progress_bar is not None:
            progress_bar.close()
        ckpts.close()
        writer.close()
    return final

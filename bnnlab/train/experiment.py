"""What a training run is made of, built from a config without touching the workdir: data,
model, optimizer, schedule and the jitted, sharded steps.

``build`` makes the standard (one-task) experiment; ``assemble`` is the part every trainer
shares, so the reconfigurable BNN (``bnnlab.reconfig.trainer``) gets the same steps, metrics,
schedules, NaN stop and exact resume by supplying only its tasks: per task a data loader and
the variable collections that select it. Step s trains task s mod M. Quantizer projections,
decay opt-outs and diagnostics follow the layers ``inventory.scan`` finds (QuantConv and
QuantDense; not the reconfigurable model's keyed layers).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bnnlab import config_lib, data, runs
from bnnlab.diagnostics import summary as summary_lib
from bnnlab.diagnostics import tracking
from bnnlab.layers import inventory
from bnnlab.train import optim, sharding, steps
from bnnlab.train import schedule as schedule_lib


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of a run: its training data, its eval batches, and the extra (read-only)
    variable collections that make the model compute it (None for an ordinary model)."""

    name: str  # "" for a one-task run; else metrics keys get a "/<name>" suffix
    loader: Any  # data.pipeline.TrainLoader
    eval_batches: Callable
    collections: Any = None
    encoded_images: bool = False  # decodes JPEGs (worker processes pay off)


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, built from a config without touching the workdir."""

    config: Any
    mesh: Any
    tasks: tuple[Task, ...]
    model: Any
    layers: dict
    tx: Any
    schedule: schedule_lib.Schedule
    example: jax.Array
    abstract_state: Any
    state_sharding: Any
    batch_sharding: Any
    train_step: Callable  # jitted (state, batch, collections, teacher vars) → (state, metrics)
    eval_step: Callable  # jitted (state, batch, collections) → sums
    diagnostics_step: Callable | None  # jitted (state, batch, collections) → (stats, state)
    track_layers: dict | None
    teacher_variables: Any = None
    describe: Callable[[Experiment], None] | None = None  # logs what is trained (process 0)
    # (variables from model.init, per-task collections) → the initial variables (None: as is)
    initialize: Callable[[Any, Sequence[Any]], Any] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.schedule.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    def task_of(self, step: int) -> Task:
        return self.tasks[step % len(self.tasks)]

    def init_state(self) -> steps.TrainState:
        def init(rng, example, collections):
            variables = self.model.init(rng, example, train=True)
            if self.initialize is not None:
                variables = self.initialize(variables, collections)
            return steps.state_from_variables(variables, self.tx, self.track_layers)

        rng = jax.random.key(self.config.seed)
        collections = [t.collections for t in self.tasks]
        return jax.jit(init, out_shardings=self.state_sharding)(rng, self.example, collections)

    def device_batch(self, batch: dict) -> dict:
        return sharding.global_batch(batch, self.batch_sharding)


def _check_divisible(name: str, batch: int, mesh) -> None:
    shards = math.prod(mesh.shape[a] for a in sharding.batch_axes(mesh))
    if batch % shards:
        raise ValueError(
            f"config.{name} = {batch} must be divisible by the {shards} devices the batch is "
            f"sharded over (mesh {dict(mesh.shape)})."
        )


def make_mesh(config, devices=None):
    """The device mesh of ``config.mesh``, checked against the batch sizes."""
    mesh = sharding.make_mesh(config.mesh, devices)
    _check_divisible("batch_size", config.batch_size, mesh)
    _check_divisible("eval_batch_size", config.eval_batch_size, mesh)
    return mesh


def build(config, devices=None) -> Experiment:
    """Validates ``config`` and builds the standard experiment: one dataset, a zoo model."""
    config_lib.validate(config)
    mesh = make_mesh(config, devices)
    loader, eval_batches, meta, _ = data.build(config, jax.process_index(), jax.process_count())
    task = Task("", loader, eval_batches, encoded_images=data.info(config.dataset).encoded_images)
    model = runs.build_model(config, meta.num_classes)
    return assemble(config, mesh, model, [task], loader.steps_per_epoch, _describe)


def assemble(
    config,
    mesh,
    model,
    tasks: Sequence[Task],
    steps_per_epoch: int,
    describe=None,
    collections: Callable[[Any], Sequence[Any]] | None = None,
    loss_fn: Callable = steps.cross_entropy,
    initialize: Callable | None = None,
) -> Experiment:
    """The experiment of ``model`` trained on ``tasks`` round robin. ``collections`` maps the
    model's abstract variables to each task's extra collections (device-put replicated);
    ``loss_fn(logits, labels, smoothing)`` is the training loss; ``initialize(variables,
    per-task collections)`` post-processes ``model.init``'s variables (jit-traced)."""
    example = jnp.zeros((2, *tasks[0].loader.batch(0)["image"].shape[1:]), jnp.float32)
    found = inventory.scan(model, example, train=True)  # the one abstract trace of the model
    schedule = schedule_lib.Schedule.from_config(config, steps_per_epoch)
    params = found.variables["params"]
    tx, _ = optim.create(config, params, found.layers, schedule.lr, found.adder_paths)
    diagnose = config.diagnostics_every_steps > 0 and bool(tracking.binary_layers(found.layers))
    track_layers = found.layers if diagnose else None
    abstract_state = jax.eval_shape(
        functools.partial(steps.state_from_variables, tx=tx, track_layers=track_layers),
        found.variables,
    )
    state_sharding = sharding.state_shardings(abstract_state, mesh)
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    if collections is not None:
        per_task = [jax.device_put(c, replicated) for c in collections(found.variables)]
        tasks = [
            dataclasses.replace(t, collections=c) for t, c in zip(tasks, per_task, strict=True)
        ]
    teacher, teacher_variables = None, None
    if config.teacher_workdir:
        run = runs.load(config.teacher_workdir)
        teacher, teacher_variables = run.model, jax.device_put(run.variables, replicated)
        logging.info("Distilling from %s (step %d)", config.teacher_workdir, run.step)
    train_step, eval_step, diagnostics_step = _jit_steps(
        config,
        dict(model=model, layers=found.layers, schedule=schedule),
        dict(tx=tx, teacher=teacher, loss_fn=loss_fn),
        (state_sharding, batch_sharding, replicated),
        diagnose,
    )
    return Experiment(
        config=config,
        mesh=mesh,
        tasks=tuple(tasks),
        model=model,
        layers=found.layers,
        tx=tx,
        schedule=schedule,
        example=example,
        abstract_state=abstract_state,
        state_sharding=state_sharding,
        batch_sharding=batch_sharding,
        train_step=train_step,
        eval_step=eval_step,
        diagnostics_step=diagnostics_step,
        track_layers=track_layers,
        teacher_variables=teacher_variables,
        describe=describe,
        initialize=initialize,
    )


def _jit_steps(config, common: dict, training: dict, shardings, diagnose: bool):
    """The jitted (train, eval, diagnostics or None) steps; states are donated."""
    state, batch, replicated = shardings
    train_step = jax.jit(
        functools.partial(
            steps.train_step,
            **common,
            **training,
            label_smoothing=config.label_smoothing,
            distill_weight=config.distill_weight,
        ),
        in_shardings=(state, batch, replicated, replicated),
        out_shardings=(state, replicated),
        donate_argnums=(0,),
    )
    eval_step = jax.jit(
        functools.partial(steps.eval_step, model=common["model"]),
        in_shardings=(state, batch, replicated),
        out_shardings=replicated,
    )
    diagnostics_step = None
    if diagnose:
        diagnostics_step = jax.jit(
            functools.partial(steps.diagnostics_step, **common),
            in_shardings=(state, batch, replicated),
            out_shardings=(replicated, state),
            donate_argnums=(0,),
        )
    return train_step, eval_step, diagnostics_step


def _describe(exp: Experiment) -> None:
    config = exp.config
    # On its own lines, so the log prefix does not push the header off its columns.
    summary_lib.summary(
        exp.model, exp.example.shape[1:], print_fn=lambda text: logging.info("Model:\n%s", text)
    )
    logging.info(
        "%s on %s: %d parameters, %d quantized layers, %d steps (%d per epoch), mesh %s",
        config.model_name,
        config.dataset,
        sum(x.size for x in jax.tree.leaves(exp.abstract_state.params)),
        sum(1 for layer in exp.layers.values() if layer.kernel_quantizer or layer.input_quantizer),
        exp.total_steps,
        exp.steps_per_epoch,
        dict(exp.mesh.shape),
    )

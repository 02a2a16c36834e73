"""A trained reconfigurable model, for evaluation, prediction and export: its shared
variables, read once from the workdir (``bnnlab.runs``), and the keys supplied per call.

The export is the common ``bnnlab.export`` archive (docs/reconfigurable.md, "Export"): the
shared latent weights and the per-task BatchNorm rows as float variables, no packed layers
(the binary weights a task computes with exist only under its keys), and a manifest whose
``tasks`` entry lists the task ids and class counts. Nothing in it is key material.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab import runs
from bnnlab.export import archive
from bnnlab.reconfig import guard
from bnnlab.reconfig import keys as keys_lib
from bnnlab.reconfig import tasks as tasks_lib
from bnnlab.train import steps


@dataclasses.dataclass
class Run:
    """A reconfigurable model with its trained variables; keys select a task per call."""

    run: runs.Run
    tasks: list
    key_record: dict | None = None

    @property
    def config(self):
        return self.run.config

    @property
    def model(self) -> Any:
        return self.run.model

    @property
    def variables(self) -> dict:
        return self.run.variables

    @functools.cached_property
    def _template(self) -> dict:
        example = jnp.zeros((1, *self.run.input_shape))
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), example))["task"]

    @functools.cached_property
    def _eval_batches(self) -> list:
        return tasks_lib.build_data(self.config, self.tasks)[1]

    @functools.cached_property
    def _eval_step(self):
        return jax.jit(functools.partial(steps.eval_step, model=self.model))

    def check_keys(self, key_material: keys_lib.KeyMaterial) -> None:
        """Raises ``guard.WrongKeys`` unless the run was trained with ``key_material``."""
        if self.key_record is None:
            guard.check_run(self.run.workdir, key_material)  # explains the missing record
        guard.verify(self.key_record, key_material, f"the run in {self.run.workdir}")

    def task_variables(
        self, task_id: str, key_material: keys_lib.KeyMaterial, check_keys: bool = True
    ) -> dict:
        """The ``task`` collection that selects ``task_id`` under the keys. ``check_keys=False``
        skips the key check: an attacker's view of a stolen copy (``benchmarks/rbnn_attack.py``)."""
        if check_keys:
            self.check_keys(key_material)
        task = tasks_lib.lookup(self.tasks, task_id)
        return tasks_lib.task_collections(self._template, [task], key_material)[0]["task"]

    def predict(self, images, task_id: str, key_material: keys_lib.KeyMaterial, check_keys=True):
        """Logits of ``task_id`` (its first C_t classes are meaningful) under the keys."""
        task_vars = self.task_variables(task_id, key_material, check_keys)
        variables = {**self.variables, "task": task_vars}
        return self.model.apply(variables, images, train=False)

    def evaluate(
        self, task_id: str, key_material: keys_lib.KeyMaterial, check_keys: bool = True
    ) -> float:
        """Test accuracy of ``task_id`` under the keys."""
        task = tasks_lib.lookup(self.tasks, task_id)
        collections = {"task": self.task_variables(task_id, key_material, check_keys)}
        state = steps.TrainState(
            step=jnp.zeros((), jnp.int32),
            params=self.variables["params"],
            batch_stats=self.variables["batch_stats"],
            quant_state={},
            opt_state=None,
        )
        correct = count = 0.0
        for batch in self._eval_batches[task.index]():
            sums = jax.device_get(self._eval_step(state, batch, collections))
            correct, count = correct + float(sums["correct"]), count + float(sums["count"])
        return correct / max(count, 1.0)

    def export(self, path, key_material: keys_lib.KeyMaterial) -> pathlib.Path:
        """Writes the deployable model (an ``.npz`` export archive; see the module docstring),
        after checking that ``key_material`` is the run's."""
        self.check_keys(key_material)
        manifest = dict(
            model=self.run.model_ref,
            input_shape=list(self.run.input_shape),
            tasks=[{"id": t.task_id, "classes": t.num_classes} for t in self.tasks],
            key_check=self.key_record,
        )
        float_vars = jax.tree.map(np.asarray, jax.device_get(self.variables))
        return archive.save(path, manifest, float_vars, [])


def load(workdir, step: int | None = None) -> Run:
    """A trained reconfigurable run from its workdir (keys are supplied per call)."""
    run = runs.load(workdir, step)
    return Run(run, tasks_lib.parse(run.config.reconfig.tasks), guard.read(workdir))

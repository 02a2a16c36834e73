"""A training workdir as a Python object: ``runs.load(workdir)`` reads its config, the model it
describes and a checkpoint, once, for every tool that reads a run afterwards (export, inspect,
the reconfigurable model's evaluation, distillation and warm starts).

A workdir holds ``config.json`` (the run's config), ``checkpoints/`` (``runs.checkpoint``) and
``metrics.jsonl`` (``runs.metrics``). This package sits below ``bnnlab.train`` and
``bnnlab.export``: it knows how a run is stored, not how it is trained. The one model it
builds from outside the zoo is the reconfigurable one, from ``bnnlab.reconfig.model`` and
``.tasks``, imported on use (they import nothing of training).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any

import jax.numpy as jnp
import ml_collections as mlc

from bnnlab import data, models
from bnnlab.runs import checkpoint

CONFIG_FILE = "config.json"
COLLECTIONS = ("params", "batch_stats", "quant_state")  # the model variables a checkpoint holds
RECONFIG = "rbnn_reactnet"  # the reconfigurable model (``config.trainer = "reconfig"``)


def model_ref(config, num_classes: int | None = None) -> dict:
    """The JSON-able description of the model a config names: ``models.from_ref``'s, or for
    the reconfigurable model ``{"name": "rbnn_reactnet", "num_tasks", "max_classes", "kwargs"}``."""
    if config.get("trainer", "supervised") == "reconfig":
        from bnnlab.reconfig import tasks as tasks_lib

        tasks = tasks_lib.parse(config.reconfig.tasks)
        return dict(
            name=config.model_name,
            num_tasks=len(tasks),
            max_classes=max(t.num_classes for t in tasks),
            kwargs=config.model.to_dict(),
        )
    q = config.quant
    spec = dict(
        kernel=q.kernel,
        inputs=q.inputs,
        scale=q.scale,
        pad_value=q.pad_value,
        adder=q.get("adder", False),
    )
    if q.get("input_norm") is not None:  # transformers only; absent from older workdirs
        spec["input_norm"] = q.input_norm
    return dict(
        name=config.model_name,
        num_classes=data.info(config.dataset).num_classes if num_classes is None else num_classes,
        quant=spec,
        kwargs=config.model.to_dict(),
    )


def model_from_ref(ref: dict):
    """The Flax module a ``model_ref`` describes."""
    if "num_tasks" in ref:
        from bnnlab.reconfig import model as reconfig_model

        if ref["name"] != RECONFIG:
            raise ValueError(
                f"The reconfig trainer builds {RECONFIG!r} (the reconfigurable ReActNet), "
                f"got config.model_name = {ref['name']!r}."
            )
        return reconfig_model.ReconfigurableReActNet(
            num_tasks=ref["num_tasks"], max_classes=ref["max_classes"], **ref["kwargs"]
        )
    return models.from_ref(ref)


def build_model(config, num_classes: int | None = None):
    """The model a config describes (``quant`` fields of None give the float baseline),
    computing in ``config.compute_dtype`` (workdirs from before mixed precision: float32)."""
    model = model_from_ref(model_ref(config, num_classes))
    compute_dtype = config.get("compute_dtype", "float32")
    if compute_dtype == "float32":
        return model
    return model.clone(dtype=jnp.dtype(compute_dtype))


def input_shape(config) -> tuple[int, int, int]:
    """Shape of one preprocessed image for a config (a reconfigurable model's tasks share one:
    the first task's size, the widest task's channels)."""
    names = [config.dataset]
    if config.get("trainer", "supervised") == "reconfig":
        names = [spec.partition(":")[0] for spec in config.reconfig.tasks]
    if len(data.info(names[0]).image_shape) != 3:  # token sequences
        return data.info(names[0]).image_shape
    h, w, _ = data.info(names[0]).image_shape
    if config.image_size:
        h = w = config.image_size
    return h, w, max(data.info(n).image_shape[-1] for n in names)


def save_config(config, workdir: str | pathlib.Path) -> None:
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def load_config(workdir: str | pathlib.Path) -> mlc.ConfigDict:
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a bnnlab training workdir?")
    raw = json.loads(path.read_text())
    # JSON turns tuples into lists; the config schema uses tuples.
    for key in ("mesh", "weight_decay_rules", "lr_boundaries", "lr_values"):
        if key in raw:
            raw[key] = tuple(tuple(v) if isinstance(v, list) else v for v in raw[key])
    return mlc.ConfigDict(raw)


@dataclasses.dataclass
class Run:
    """One checkpoint of a training run: its config, model and variables."""

    workdir: pathlib.Path
    config: mlc.ConfigDict
    step: int
    variables: dict  # the checkpoint's params, batch_stats and quant_state (those it has)
    steps: tuple[int, ...]  # every checkpoint step the workdir holds

    @functools.cached_property
    def model_ref(self) -> dict:
        return model_ref(self.config)

    @functools.cached_property
    def model(self) -> Any:
        return build_model(self.config)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return input_shape(self.config)

    def restore(self, step: int) -> dict:
        """The variables of another checkpoint of the same run."""
        return _restore(self.workdir, self.config, step)[0]


def _restore(workdir, config, step: int | None) -> tuple[dict, int, tuple[int, ...]]:
    ckpts = checkpoint.Checkpoints(workdir, keep=config.keep_checkpoints)
    try:
        tree, step = ckpts.restore_raw(step)
        steps = tuple(ckpts.steps())
    finally:
        ckpts.close()
    variables = {k: tree[k] for k in COLLECTIONS if tree.get(k)}
    return variables, step, steps


def load(workdir: str | pathlib.Path, step: int | None = None) -> Run:
    """The run in ``workdir`` at its newest checkpoint (or at ``step``)."""
    workdir = pathlib.Path(workdir)
    config = load_config(workdir)
    variables, step, steps = _restore(workdir, config, step)
    return Run(workdir, config, step, variables, steps)

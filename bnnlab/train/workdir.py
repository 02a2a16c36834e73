"""A training workdir as a Python object: its config, its model, its checkpoints.

Used to resume, to distil from a trained teacher, and by tools that read a run afterwards.
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import ml_collections as mlc

from bnnlab import data, models
from bnnlab.train import checkpoint

CONFIG_FILE = "config.json"


def model_ref(config, num_classes: int) -> dict:
    """The JSON-able description of the model a config names (``models.from_ref``)."""
    q = config.quant
    return dict(
        name=config.model_name,
        num_classes=num_classes,
        quant=dict(
            kernel=q.kernel,
            inputs=q.inputs,
            scale=q.scale,
            pad_value=q.pad_value,
            adder=q.get("adder", False),
        ),
        kwargs=config.model.to_dict(),
    )


def build_model(config, num_classes: int):
    """The model a config describes (``quant`` fields of None give the float baseline),
    computing in ``config.compute_dtype`` (workdirs from before mixed precision: float32)."""
    model = models.from_ref(model_ref(config, num_classes))
    compute_dtype = config.get("compute_dtype", "float32")
    if compute_dtype == "float32":
        return model
    return model.clone(dtype=jnp.dtype(compute_dtype))


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


def input_shape(config) -> tuple[int, int, int]:
    """Shape of one preprocessed image for a config."""
    meta = data.info(config.dataset)
    h, w, c = meta.image_shape
    if config.image_size:
        h = w = config.image_size
    return h, w, c


def load(workdir: str | pathlib.Path, step: int | None = None):
    """(model, variables, config, step) of a trained run: the newest checkpoint, or ``step``."""
    config = load_config(workdir)
    model = build_model(config, data.info(config.dataset).num_classes)
    ckpts = checkpoint.Checkpoints(workdir, keep=config.keep_checkpoints)
    try:
        tree, step = ckpts.restore_raw(step)
    finally:
        ckpts.close()
    variables = {k: tree[k] for k in ("params", "batch_stats", "quant_state") if tree.get(k)}
    return model, variables, config, step

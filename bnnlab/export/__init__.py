"""Packed-inference export: a trained binary model → one ``.npz`` file that runs its binary
convolutions with the bit-packed XNOR-popcount kernel.

  report = export.export_workdir("workdirs/simaN_r18_runlocal", "simaN.npz")
  packed = export.load("simaN.npz")          # no training config needed
  logits = packed(images)                    # raw pixels; backend="auto" | "pallas" | …
  export.export_model(my_model, variables, (32, 32, 3), "mine.npz")   # any Linen model

Binary convs (1-bit kernel and input quantizers) are stored as packed bits with scales, bias
and the following BatchNorm folded into a per-channel output transform (``export.fold``);
everything else — first conv, classifier, float shortcuts, activations — is stored in float32
and runs the model's own code (a zoo model, or any Linen module: ``export_model``).
``python -m bnnlab.export --workdir=W`` exports a run and checks the packed predictions
against the trained model on its test set.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

from bnnlab import data, models, runs
from bnnlab.export import archive, described, fold, inputs
from bnnlab.export.archive import DamagedExport
from bnnlab.export.inputs import InvalidImages
from bnnlab.export.runtime import PackedModel

__all__ = [
    "DamagedExport",
    "ExportReport",
    "InvalidImages",
    "PackedModel",
    "export",
    "export_model",
    "export_run",
    "export_workdir",
    "load",
]


@dataclasses.dataclass(frozen=True)
class ExportReport:
    path: pathlib.Path
    file_bytes: int
    float32_param_bytes: int  # every trained parameter as float32
    packed_layers: tuple[str, ...]
    folded_batch_norms: tuple[str, ...]

    @property
    def compression(self) -> float:
        return self.float32_param_bytes / self.file_bytes

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.file_bytes / 1e6:.3f} MB packed vs "
            f"{self.float32_param_bytes / 1e6:.3f} MB float32 parameters "
            f"({self.compression:.1f}× smaller); {len(self.packed_layers)} binary convs packed, "
            f"{len(self.folded_batch_norms)} BatchNorms folded"
        )


def _without(tree: dict, path: str) -> None:
    *parents, leaf = path.split("/")
    for key in parents:
        tree = tree.get(key)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def export(
    model_ref: dict,
    variables: dict,
    input_shape,
    path,
    model=None,
    normalization=None,
    transform: str = "",
    image_size: int | None = None,
) -> ExportReport:
    """Exports ``variables`` of the zoo model ``model_ref`` (``models.from_ref``'s description,
    e.g. ``runs.model_ref(config)``) for images of ``input_shape``; ``model`` is that model if
    the caller has already built it. ``normalization`` (a ``bnnlab.data.augment``
    normalisation name), the eval ``transform`` and ``image_size`` are recorded, so the export
    takes raw pixels and preprocesses them as the run's evaluation did (``export.inputs``)."""
    model = models.from_ref(model_ref) if model is None else model
    manifest = dict(model=model_ref, input_shape=list(input_shape))
    return _write(model, manifest, variables, path, normalization, transform, image_size)


def export_model(
    model,
    variables: dict,
    input_shape,
    path,
    normalization=None,
    transform: str = "",
    image_size: int | None = None,
) -> ExportReport:
    """Exports any Linen ``model`` (a user's own, with ``QuantConv``/``QuantDense`` layers, or
    an ordinary one quantized by rules: ``bnnlab.quantize_model``) with its ``variables``;
    ``export.load(path)`` rebuilds it from its class, fields and rules, or takes it as
    ``model=`` (``export.described``). Preprocessing as ``export``."""
    manifest = dict(
        model=described.describe(model),
        call=described.call_kwargs(model),
        input_shape=list(input_shape),
    )
    return _write(model, manifest, variables, path, normalization, transform, image_size)


def _write(model, manifest, variables, path, normalization, transform, image_size):
    variables = jax.tree.map(np.asarray, jax.device_get(dict(variables)))
    example = np.zeros((1, *manifest["input_shape"]), np.float32)
    packed = fold.pack_model(model, variables, example, manifest.get("call"))
    float_vars = {  # new containers (packed layers are removed below), the same arrays
        c: jax.tree.map(np.asarray, variables[c])
        for c in ("params", "batch_stats", "quant_state")
        if c in variables
    }
    for p in packed:
        for collection in ("params", "quant_state"):
            _without(float_vars.get(collection, {}), p.path)
        if p.folded_bn:
            for collection in ("params", "batch_stats"):
                _without(float_vars.get(collection, {}), p.folded_bn)
    if normalization is not None:
        manifest["input"] = inputs.spec(normalization, transform, image_size)
    out = archive.save(path, manifest, float_vars, packed)
    n_params = sum(np.size(v) for v in jax.tree.leaves(variables["params"]))
    return ExportReport(
        out,
        out.stat().st_size,
        4 * n_params,
        tuple(p.path for p in packed),
        tuple(p.folded_bn for p in packed if p.folded_bn),
    )


def export_run(run: runs.Run, path) -> ExportReport:
    """Exports the checkpoint a ``runs.Run`` holds."""
    if "num_tasks" in run.model_ref:
        raise ValueError(
            f"{run.workdir} is a reconfigurable run: export it with "
            "bnnlab.reconfig.load(workdir).export(path, keys) (its binary weights exist only under "
            "keys)."
        )
    float32 = run.config.get("compute_dtype", "float32") == "float32"
    # Folding and packing work in float32: a mixed-precision run is exported from its twin.
    model = run.model if float32 else runs.model_from_ref(run.model_ref)
    return export(
        run.model_ref,
        run.variables,
        run.input_shape,
        path,
        model=model,
        normalization=data.normalization_of(run.config),
        transform=data.info(run.config.dataset).eval_transform,
        image_size=run.config.get("image_size"),
    )


def export_workdir(workdir, path, step: int | None = None) -> ExportReport:
    """Exports the newest (or ``step``) checkpoint of a training workdir."""
    return export_run(runs.load(workdir, step), path)


def load(path, model=None) -> PackedModel:
    """A loaded export; ``model``: the Linen module of an export of a user's own model whose
    fields could not be recorded (``export.described``)."""
    manifest, float_vars, packed = archive.load(path)
    if "tasks" in manifest:
        raise ValueError(
            f"{path} is a reconfigurable model's export: it runs only with a task's keys "
            "(bnnlab.reconfig), not as a packed model."
        )
    return PackedModel(manifest, float_vars, packed, source=path, model=model)

"""How an export names its model: a zoo reference (``models.from_ref``'s description, what a
training config names) or any Linen module, by class and fields, so an export of a user's own
model (built with ``QuantConv``/``QuantDense``) loads and runs like a zoo model's.

    manifest["model"] = {"name": …, "num_classes": …, …}                    (zoo)
                      | {"class": "package.module:Class", "fields": {…} or None}  (any Linen)
    manifest["call"]  = the keyword arguments of an eval call ({"train": False} when the
                        module's ``__call__`` takes ``train``)

A module whose fields are not JSON (a callable initialiser, a quantizer object) is recorded
with ``fields: None`` and loads with ``export.load(path, model=TheModel(...))``; a given model
must be of the recorded class.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json

import flax.linen as nn

from bnnlab import models


class ModelNotBuilt(ValueError):
    """An export's model that cannot be rebuilt from its manifest here (pass it instead)."""


def _class_path(model) -> str:
    return f"{type(model).__module__}:{type(model).__qualname__}"


def describe(model: nn.Module) -> dict:
    """The manifest's ``model`` entry for any Linen module."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"export takes a flax.linen.Module, got {type(model).__name__}. A model quantized "
            "by rules (bnnlab.quantize_model) is not exportable yet: export a model built with "
            "QuantConv/QuantDense."
        )
    fields = {}
    for f in dataclasses.fields(model):
        if f.name in ("parent", "name"):
            continue
        value = getattr(model, f.name)
        try:
            json.dumps(value)
        except TypeError:
            fields = None
            break
        fields[f.name] = value
    return {"class": _class_path(model), "fields": fields}


def call_kwargs(model: nn.Module) -> dict:
    """The keyword arguments of an eval-mode call of ``model``."""
    params = inspect.signature(type(model).__call__).parameters
    return {"train": False} if "train" in params else {}


def _tuples(v):
    return tuple(_tuples(e) for e in v) if isinstance(v, list) else v


def build(ref: dict, model: nn.Module | None = None, source="the export"):
    """The model an export's ``ref`` describes (``model`` if given, checked against it)."""
    if "class" not in ref:
        return models.from_ref(ref) if model is None else model
    want = ref["class"]
    if model is not None:
        if _class_path(model) != want:
            raise ModelNotBuilt(
                f"{source} holds a {want} model; the one given is a {_class_path(model)}."
            )
        return model
    module_name, _, qualname = want.partition(":")
    try:
        if ref.get("fields") is None:
            raise ValueError("its fields are not JSON, so they were not recorded")
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj(**{k: _tuples(v) for k, v in ref["fields"].items()})
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        raise ModelNotBuilt(
            f"{source} holds a {want} model that cannot be rebuilt here ({e}): pass it, "
            f"export.load(path, model={qualname.split('.')[-1]}(...))."
        ) from None

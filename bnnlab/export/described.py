"""How an export names its model: a zoo reference (``models.from_ref``'s description, what a
training config names) or any Linen module, by class and fields, so an export of a user's own
model (built with ``QuantConv``/``QuantDense``) loads and runs like a zoo model's.

    manifest["model"] = {"name": …, "num_classes": …, …}                    (zoo)
                      | {"class": "package.module:Class", "fields": {…} or None}  (any Linen)
                        (+ "rules": [{module_path, kernel, inputs, pad_value}]  (quantize_model;
                        quantizers as ``quant.get`` call strings))
    manifest["call"]  = the keyword arguments of an eval call ({"train": False} when the
                        module's ``__call__`` takes ``train``; ``quant_train=False`` with rules)

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


def _quantizer_spec(q) -> str | None:
    """A quantizer as the call string ``quant.get`` parses (``"ste_sign(clip_value=1.5)"``)."""
    if q is None:
        return None
    args = []
    for f in dataclasses.fields(q):
        value = getattr(q, f.name)
        if value != f.default:
            json.dumps(value)  # a TypeError here: not recordable
            args.append(f"{f.name}={value!r}")
    return f"{q.name}({', '.join(args)})" if args else q.name


def describe(model) -> dict:
    """The manifest's ``model`` entry for any Linen module, or for a Linen module quantized by
    rules (``bnnlab.quantize_model``: the module plus its rules as quantizer call strings)."""
    from bnnlab import intercept

    if isinstance(model, intercept.QuantizedModel):
        rules = [
            dict(
                module_path=r.module_path,
                kernel=_quantizer_spec(r.kernel),
                inputs=_quantizer_spec(r.inputs),
                pad_value=r.pad_value,
                input_norm=r.input_norm,
            )
            for r in model.rules
        ]
        return {**describe(model.model), "rules": rules}
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"export takes a flax.linen.Module or a bnnlab.quantize_model result, got "
            f"{type(model).__name__}."
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


def call_kwargs(model) -> dict:
    """The keyword arguments of an eval-mode call of ``model`` (a rule-quantized model also
    gets ``quant_train=False``: its quantizers in eval mode)."""
    from bnnlab import intercept

    if isinstance(model, intercept.QuantizedModel):
        return {**call_kwargs(model.model), "quant_train": False}
    params = inspect.signature(type(model).__call__).parameters
    return {"train": False} if "train" in params else {}


def _tuples(v):
    return tuple(_tuples(e) for e in v) if isinstance(v, list) else v


def build(ref: dict, model=None, source="the export"):
    """The model an export's ``ref`` describes (``model`` if given, checked against it)."""
    if "class" not in ref:
        return models.from_ref(ref) if model is None else model
    if "rules" in ref:
        from bnnlab import intercept

        inner = model.model if isinstance(model, intercept.QuantizedModel) else model
        base = build({k: v for k, v in ref.items() if k != "rules"}, inner, source)
        rules = [intercept.Rule(**r) for r in ref["rules"]]
        return intercept.QuantizedModel(base, rules, on_unused="ignore")
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

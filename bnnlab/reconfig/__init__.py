"""Reconfigurable BNN: one binary parameter set serving several tasks, selected by a user key
and a device root key (Qiu et al., IEEE TCAD 2023; docs/reconfigurable.md). See ``keys``
(key material and hygiene), ``derive`` (the pinned derivation), ``guard`` (the key check),
``puf`` (the demo device), ``layers`` (keyed layers, masked rows), ``model``, ``tasks``,
``trainer`` (round-robin training on the common loop), ``run`` (``load`` a trained run for
evaluation, prediction and export) and ``python -m bnnlab.reconfig`` (evaluate a task).

Submodules are imported on first use, so the run reader (``bnnlab.runs``) can build the model
from ``model`` and ``tasks`` without importing the trainer above it.
"""

import importlib

_EXPORTS = {
    "KeyMaterial": ("bnnlab.reconfig.keys", "KeyMaterial"),
    "Run": ("bnnlab.reconfig.run", "Run"),
    "load": ("bnnlab.reconfig.run", "load"),
}
_MODULES = ("derive", "guard", "keys", "layers", "model", "puf", "run", "tasks", "trainer")

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"bnnlab.reconfig.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bnnlab.reconfig' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])

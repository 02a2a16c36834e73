"""Reconfigurable BNN: one binary parameter set serving several tasks, selected by a user key
and a device root key (Qiu et al., IEEE TCAD 2023). See ``keys`` (derivation), ``layers``
(keyed layers, per-task BatchNorm), ``model``, ``tasks``, ``trainer`` (round-robin training,
``load`` for evaluation and prediction) and ``python -m bnnlab.reconfig`` (evaluate a task)."""

from bnnlab.reconfig import keys, layers, model, tasks, trainer
from bnnlab.reconfig.keys import KeyMaterial
from bnnlab.reconfig.trainer import Run, load

__all__ = ["KeyMaterial", "Run", "keys", "layers", "load", "model", "tasks", "trainer"]

"""``quantize_model`` for Flax NNX modules: the same ``Rule``s, matched against the '/'-joined
attribute paths of the module graph (``"blocks/0/conv"``), turn the matching ``nnx.Conv`` /
``nnx.Linear`` modules into quantizing ones; the parameter state (``nnx.state``) keeps its
structure and values, so checkpoints and optimizers of the float model carry over.

    q = quantize_model(model, rules)      # a quantized copy; ``model`` itself is unchanged
    q(x)                                   # quantizers in train mode (straight-through)
    q.eval(); q(x)                         # quantizers in eval mode, with Dropout/BatchNorm
    q.train()                              # back to train mode

Forward and backward of each matched layer are those of the Linen path (``bnnlab.intercept``):
y = op(q_in(x), q_w(W)) with the quantizers' straight-through gradients, padding with the
rule's ``pad_value``. The train flag follows NNX's convention: ``model.eval()`` sets
``deterministic=True`` on every module that has the attribute, and a matched layer reads it.
Scheduled quantizers see ``progress=None`` (their end-of-schedule value) here: NNX keeps no
per-call context to carry a traced progress.
"""

from __future__ import annotations

import functools
import re
import warnings

from flax import nnx

from bnnlab import intercept


@functools.cache
def _quantizing_class(base: type) -> type:
    """``base`` (nnx.Conv or nnx.Linear, or a subclass) whose call quantizes its operands."""
    is_conv = issubclass(base, nnx.Conv)
    attr = "conv_general_dilated" if is_conv else "dot_general"

    def __call__(self, *args, **kwargs):
        original = getattr(self, attr)
        op = intercept._quantizing_op(
            original, self.quant_rule, None, not self.deterministic, is_conv
        )
        object.__setattr__(self, attr, op)
        try:
            return base.__call__(self, *args, **kwargs)
        finally:
            object.__setattr__(self, attr, original)

    return type(f"Quantized{base.__name__}", (base,), {"__call__": __call__})


def quantize(model: nnx.Module, rules, on_unused: str = "error") -> nnx.Module:
    """A copy of ``model`` whose ``nnx.Conv``/``nnx.Linear`` modules matched by ``rules``
    quantize (first match wins); see the module docstring."""
    if on_unused not in intercept.ON_UNUSED:
        raise ValueError(f"on_unused must be one of {intercept.ON_UNUSED}, got {on_unused!r}.")
    rules = tuple(rules)
    if not rules:
        raise ValueError("quantize_model needs at least one Rule.")
    for r in rules:
        if not isinstance(r, intercept.Rule):
            raise TypeError(f"Expected bnnlab.Rule objects, got {type(r).__name__}: {r!r}.")
    model = nnx.clone(model)
    seen: dict[str, tuple[str, int | None]] = {}
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, (nnx.Conv, nnx.Linear)):
            continue
        name = "/".join(map(str, path))
        index = next((i for i, r in enumerate(rules) if re.fullmatch(r.module_path, name)), None)
        seen[name] = (type(node).__name__, index)
        if index is None or rules[index].is_float:
            continue
        node.__class__ = _quantizing_class(type(node))
        node.quant_rule = rules[index]
        node.deterministic = False  # nnx's train flag: Module.eval() sets it to True
    used = {index for _, index in seen.values()}
    unused = [r.module_path for i, r in enumerate(rules) if i not in used]
    if unused and on_unused != "ignore":
        paths = ", ".join(f"{p} ({kind})" for p, (kind, _) in sorted(seen.items())) or "none"
        message = (
            f"quantize_model rule(s) {unused} matched no module (patterns are re.fullmatch'ed "
            f"against '/'-joined attribute paths; the first matching rule wins). nnx.Conv / "
            f"nnx.Linear modules: {paths}."
        )
        if on_unused == "error":
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
    return model

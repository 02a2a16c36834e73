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
    rules = intercept.checked_rules(rules, on_unused)
    model = nnx.clone(model)
    seen: dict[str, tuple[str, int | None]] = {}
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, (nnx.Conv, nnx.Linear)):
            continue
        name = "/".join(map(str, path))
        index = intercept.rule_index(rules, name)
        seen[name] = (type(node).__name__, index)
        if index is None or rules[index].is_float:
            continue
        node.__class__ = _quantizing_class(type(node))
        node.quant_rule = rules[index]
        node.deterministic = False  # nnx's train flag: Module.eval() sets it to True
    intercept.report_unused(rules, seen, on_unused, "nnx.Conv / nnx.Linear modules")
    return model

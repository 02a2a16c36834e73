"""Quantize an unmodified Flax Linen model by rules, keeping its parameter tree.

    >>> qmodel = bnnlab.quantize_model(model, [
    ...     bnnlab.Rule("Conv_0"),                                   # first conv stays float
    ...     bnnlab.Rule("Dense_.*"),                                 # so does the classifier
    ...     bnnlab.Rule(".*", kernel="ste_sign", inputs="ste_sign"), # everything else binary
    ... ])
    >>> variables = qmodel.init(rng, x)         # the same tree model.init gives
    >>> logits = qmodel.apply(variables, x, progress=0.5)

How it works: ``nn.intercept_methods`` sees every module call with its path. For an ``nn.Conv``,
``nn.Dense`` or ``nn.DenseGeneral`` whose path a rule matches, the interceptor hands the module a
quantizing ``conv_general_dilated`` / ``dot_general`` for the duration of that call (the hook
Linen provides for exactly this); an ``nn.Einsum`` gets a quantizing ``promote_dtype`` (the step
between reading its kernel and the einsum). The module creates and reads its own params
unchanged and only the arithmetic is quantized. Rules match the '/'-joined module path with
``re.fullmatch``; the first matching rule wins; a rule with no quantizers keeps a module in float.

Projections (everything but convolutions) are quantized in a canonical layout, whatever axes
the module contracts: the kernel as (K, N), the contracted inputs first and the output units
last, and the inputs as (…, K), the contracted features last. So "per output unit", "per
group of inputs" and "per token" mean the same for ``nn.Dense``, an attention block's
``nn.DenseGeneral`` (kernel (D, heads, head_dim) or (heads, head_dim, D)) and ``nn.Einsum``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bnnlab import quant
from bnnlab.layers import inventory, quantized

SUPPORTED = (nn.Conv, nn.Dense, nn.DenseGeneral, nn.Einsum)
ON_UNUSED = ("error", "warn", "ignore")
INPUT_NORMS = (None, "rms", "layer")
NORM_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class Rule:
    """Quantize the ``nn.Conv``/``nn.Dense`` modules whose path fully matches ``module_path``.

    Attributes:
      module_path: regex matched with ``re.fullmatch`` against the '/'-joined module path
        (e.g. ``"ResNetBlock_0/Conv_1"``).
      kernel: quantizer (or registered name / call string) for the kernel; None keeps it float.
      inputs: quantizer for the module's inputs; None keeps them float.
      pad_value: value of padded taps after input quantization, 0 or 1 (convolutions only).
      input_norm: a parameter-free normalisation of each input token over the contracted
        features, before the input quantizer: ``"rms"`` (x / √(mean x² + ε)) or ``"layer"``
        ((x − mean) / √(var + ε)), ε = 1e-6. BitNet's BitLinear normalises its input there
        (the sub-layer norm: quantization then sees unit-scale tokens); it has no gain so that
        the parameter tree stays the original model's. Projections only.
    """

    module_path: str
    kernel: quant.Quantizer | str | None = None
    inputs: quant.Quantizer | str | None = None
    pad_value: float = 0.0
    input_norm: str | None = None

    def __post_init__(self):
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(
                f"Rule input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}."
            )
        try:
            re.compile(self.module_path)
        except re.error as e:
            raise ValueError(f"Rule module_path {self.module_path!r} is not a regex: {e}.") from e
        quantized.check_pad_value(self.pad_value)
        for field in ("kernel", "inputs"):
            q = quant.resolve(getattr(self, field))
            if q is not None and (q.learnable or (q.stateful and field == "inputs")):
                raise ValueError(
                    f"Quantizer {q.name!r} has learnable arrays {q.learnable} that the original "
                    "model has no parameters for; quantize_model keeps the parameter tree "
                    "unchanged, so use bnnlab.layers.QuantConv/QuantDense for it."
                )
            object.__setattr__(self, field, q)

    @property
    def is_float(self) -> bool:
        return self.kernel is None and self.inputs is None and self.input_norm is None


def normalize_tokens(x, kind: str | None):
    """``Rule.input_norm`` of ``x`` over its last axis, computed in float32 (at least)."""
    if kind is None:
        return x
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if kind == "layer":
        y = y - jnp.mean(y, axis=-1, keepdims=True)
    y = y * lax.rsqrt(jnp.mean(y * y, axis=-1, keepdims=True) + NORM_EPS)
    return y.astype(x.dtype)


def _to_canonical(x, first: tuple[int, ...], last: tuple[int, ...], flat_first: bool):
    """``x`` with axes ``first`` then ``last`` (every axis once), the ``first`` ones flattened
    into one axis if ``flat_first`` else the ``last`` ones; and the inverse map."""
    perm = (*first, *last)
    moved = x if perm == tuple(range(x.ndim)) else jnp.transpose(x, perm)
    shape = moved.shape
    if flat_first:
        flat = moved.reshape(math.prod(shape[: len(first)]), *shape[len(first) :])
    else:
        flat = moved.reshape(*shape[: len(first)], math.prod(shape[len(first) :]))
    inverse = tuple(np.argsort(perm))

    def restore(y):
        y = y.reshape(shape)
        return y if perm == tuple(range(x.ndim)) else jnp.transpose(y, inverse)

    return flat, restore


def quantize_projection(rule: Rule, lhs, rhs, lhs_contract, rhs_contract, progress, train):
    """``rule``'s norm and quantizers applied to a projection's inputs ``lhs`` and kernel
    ``rhs`` in the canonical layout (inputs (…, K), kernel (K, N); see the module docstring),
    returned in their own layouts."""
    lhs_contract = tuple(a % lhs.ndim for a in lhs_contract)
    rhs_contract = tuple(a % rhs.ndim for a in rhs_contract)
    if rule.inputs is not None or rule.input_norm is not None:
        free = tuple(a for a in range(lhs.ndim) if a not in lhs_contract)
        tokens, restore = _to_canonical(lhs, free, lhs_contract, flat_first=False)
        tokens = normalize_tokens(tokens, rule.input_norm)
        if rule.inputs is not None:
            tokens = rule.inputs(tokens, progress=progress, train=train)
        lhs = restore(tokens)
    if rule.kernel is not None:
        free = tuple(a for a in range(rhs.ndim) if a not in rhs_contract)
        kernel, restore = _to_canonical(rhs, rhs_contract, free, flat_first=True)
        if kernel.ndim > 2:
            kernel = kernel.reshape(kernel.shape[0], -1)
        rhs = restore(rule.kernel(kernel, progress=progress, train=train))
    return lhs, rhs


def _quantizing_op(base_op, rule: Rule, progress, train: bool, is_conv: bool):
    """A conv_general_dilated / dot_general that quantizes its operands, then calls ``base_op``.

    A stateful kernel quantizer (SiMaN) has nowhere to store its eval-time state here, so it
    recomputes its code from the latent weights in every call.
    """

    def quantize_operands(lhs, rhs):
        if rule.input_norm is not None:
            raise ValueError(
                f"Rule {rule.module_path!r}: input_norm applies to projections (Dense, "
                "DenseGeneral, Einsum), not to convolutions."
            )
        if rule.inputs is not None:
            lhs = rule.inputs(lhs, progress=progress, train=train)
        if rule.kernel is not None:
            rhs = rule.kernel(rhs, progress=progress, train=train)
        return lhs, rhs

    def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, **kwargs):
        lhs, rhs = quantize_operands(lhs, rhs)
        rank = rhs.ndim - 2
        lhs, padding = quantized.pad_inputs(
            lhs,
            padding,
            rhs.shape[:rank],
            window_strides,
            lhs_dilation or (1,) * rank,
            rhs_dilation or (1,) * rank,
            rule.pad_value,
        )
        return base_op(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            **kwargs,
        )

    def dot(lhs, rhs, dimension_numbers, *args, **kwargs):
        (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
        if lhs_batch or rhs_batch:
            raise ValueError(
                f"Rule {rule.module_path!r}: a batched dot_general (DenseGeneral batch_dims) "
                "cannot be quantized; only projections of the inputs by a kernel."
            )
        lhs, rhs = quantize_projection(
            rule, lhs, rhs, tuple(lhs_contract), tuple(rhs_contract), progress, train
        )
        return base_op(lhs, rhs, dimension_numbers, *args, **kwargs)

    return conv if is_conv else dot


def einsum_contractions(equation: str, lhs_ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes of the inputs and of the kernel that an ``nn.Einsum`` equation contracts,
    e.g. ``"btd,dhk->bthk"`` → ((2,), (0,)); an ellipsis is allowed in the inputs only."""
    equation = equation.replace(" ", "")
    operands, _, out = equation.partition("->")
    lhs, _, rhs = operands.partition(",")
    if "..." in rhs or not rhs.isalpha():
        raise ValueError(
            f"nn.Einsum equation {equation!r}: quantize_model needs the kernel's axes named by "
            "letters (no ellipsis)."
        )
    pre, ellipsis, post = lhs.partition("...")
    positions = {c: i for i, c in enumerate(pre)}
    positions.update({c: lhs_ndim - len(post) + j for j, c in enumerate(post)})
    if not ellipsis:
        positions = {c: i for i, c in enumerate(lhs)}
    shared = [c for c in rhs if c in positions]
    if any(c in out for c in shared):
        raise ValueError(
            f"nn.Einsum equation {equation!r} has batch axes shared by the inputs, the kernel and "
            "the output; quantize_model quantizes projections of the inputs by a kernel only."
        )
    return tuple(positions[c] for c in shared), tuple(rhs.index(c) for c in shared)


def _quantizing_promote(module: nn.Einsum, call_args, call_kwargs, rule, progress, train):
    """An ``nn.Einsum``'s ``promote_dtype`` that also quantizes its inputs and kernel."""
    original = module.promote_dtype
    equation = call_kwargs.get("einsum_str", call_args[1] if len(call_args) > 1 else None)
    equation = module.einsum_str if equation is None else equation

    def promote(*arrays, **kwargs):
        inputs, kernel, *rest = original(*arrays, **kwargs)
        lhs_contract, rhs_contract = einsum_contractions(equation, inputs.ndim)
        inputs, kernel = quantize_projection(
            rule, inputs, kernel, lhs_contract, rhs_contract, progress, train
        )
        return [inputs, kernel, *rest]

    return promote


def checked_rules(rules, on_unused: str) -> tuple[Rule, ...]:
    """``rules`` as a tuple, or an error naming what is wrong with them or ``on_unused``."""
    if on_unused not in ON_UNUSED:
        raise ValueError(f"on_unused must be one of {ON_UNUSED}, got {on_unused!r}.")
    rules = tuple(rules)
    if not rules:
        raise ValueError("quantize_model needs at least one Rule.")
    for r in rules:
        if not isinstance(r, Rule):
            raise TypeError(f"Expected bnnlab.Rule objects, got {type(r).__name__}: {r!r}.")
    return rules


def rule_index(rules, path: str) -> int | None:
    """Index of the first rule whose pattern fully matches ``path``, or None."""
    return next((i for i, r in enumerate(rules) if re.fullmatch(r.module_path, path)), None)


def report_unused(rules, seen: dict[str, tuple[str, int | None]], on_unused: str, what: str):
    """Raises or warns (``on_unused``) about rules that matched none of the ``seen`` modules
    (path → (kind, rule index)); ``what`` names those modules in the message."""
    used = {index for _, index in seen.values()}
    unused = [r.module_path for i, r in enumerate(rules) if i not in used]
    if not unused or on_unused == "ignore":
        return
    paths = ", ".join(f"{p} ({kind})" for p, (kind, _) in sorted(seen.items())) or "none"
    message = (
        f"quantize_model rule(s) {unused} matched no module (patterns are re.fullmatch'ed "
        f"against '/'-joined paths; the first matching rule wins). {what}: {paths}."
    )
    if on_unused == "error":
        raise ValueError(message)
    warnings.warn(message, stacklevel=4)


class QuantizedModel:
    """A Linen model whose matching Conv/Dense modules compute with quantized operands.

    ``init``/``apply`` take the wrapped model's arguments plus two keyword-only extras:
    ``progress`` (training fraction for scheduled quantizers; a traced value never recompiles)
    and ``quant_train`` (train-mode flag for quantizers that differ in eval; default: the
    call's ``train`` argument if it passes one, else True). Any other attribute is the wrapped
    model's; ``clone(**fields)`` clones the wrapped model and keeps the rules.
    """

    def __init__(self, model: nn.Module, rules, on_unused: str = "error"):
        self.model = model
        self.rules = checked_rules(rules, on_unused)
        self.on_unused = on_unused

    def __getattr__(self, name):
        return getattr(self.model, name)

    def clone(self, **fields) -> QuantizedModel:
        return QuantizedModel(self.model.clone(**fields), self.rules, self.on_unused)

    @staticmethod
    def _quant_train(quant_train, kwargs) -> bool:
        if quant_train is not None:
            return quant_train
        return bool(kwargs.get("train", True))

    def rule_for(self, path: str) -> int | None:
        """Index of the first rule matching ``path``, or None."""
        return rule_index(self.rules, path)

    def _intercept(self, progress, train: bool, seen: dict[str, tuple[str, int | None]]):
        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            if context.method_name != "__call__" or not isinstance(module, SUPPORTED):
                return next_fun(*args, **kwargs)
            path = "/".join(module.path)
            index = self.rule_for(path)
            seen[path] = (type(module).__name__, index)
            if index is None or self.rules[index].is_float:
                return next_fun(*args, **kwargs)
            if isinstance(module, nn.Einsum):
                promote = _quantizing_promote(
                    module, args, kwargs, self.rules[index], progress, train
                )
                original_promote = module.promote_dtype
                object.__setattr__(module, "promote_dtype", promote)
                try:
                    return next_fun(*args, **kwargs)
                finally:
                    object.__setattr__(module, "promote_dtype", original_promote)
            is_conv = isinstance(module, nn.Conv)
            attr = "conv_general_dilated_cls" if is_conv else "dot_general_cls"
            original_cls = getattr(module, attr)
            original_fn = getattr(module, attr[: -len("_cls")])

            def make_op():
                if original_cls is not None:
                    base_op = original_cls()
                elif original_fn is not None:
                    base_op = original_fn
                else:
                    base_op = lax.conv_general_dilated if is_conv else lax.dot_general
                return _quantizing_op(base_op, self.rules[index], progress, train, is_conv)

            # Linen modules are frozen dataclasses; the hook is swapped for this call only.
            object.__setattr__(module, attr, make_op)
            try:
                return next_fun(*args, **kwargs)
            finally:
                object.__setattr__(module, attr, original_cls)

        return nn.intercept_methods(interceptor)

    def _check_unused(self, seen):
        report_unused(self.rules, seen, self.on_unused, "Conv/Dense/DenseGeneral/Einsum called")

    def _run(self, fn, progress, train):
        progress = quant.base.resolve_progress(progress) if progress is not None else None
        seen: dict[str, tuple[str, int | None]] = {}
        with self._intercept(progress, train, seen):
            out = fn()
        self._check_unused(seen)
        return out, seen

    def init(self, rngs, *args, progress=None, quant_train: bool | None = None, **kwargs):
        train = self._quant_train(quant_train, kwargs)
        return self._run(lambda: self.model.init(rngs, *args, **kwargs), progress, train)[0]

    def init_with_output(
        self, rngs, *args, progress=None, quant_train: bool | None = None, **kwargs
    ):
        train = self._quant_train(quant_train, kwargs)
        return self._run(
            lambda: self.model.init_with_output(rngs, *args, **kwargs), progress, train
        )[0]

    def apply(self, variables, *args, progress=None, quant_train: bool | None = None, **kwargs):
        train = self._quant_train(quant_train, kwargs)
        return self._run(lambda: self.model.apply(variables, *args, **kwargs), progress, train)[0]

    def quantized_layers(self, *args, rngs=None, method=None, **kwargs):
        """The quantized modules, as ``bnnlab.layers.inventory.find`` reports them."""
        rngs = jax.random.key(0) if rngs is None else rngs
        _, seen = self._run(
            lambda: jax.eval_shape(lambda: self.model.init(rngs, *args, method=method, **kwargs)),
            None,
            True,
        )
        layers = {}
        for path, (_, index) in seen.items():
            if index is not None and not self.rules[index].is_float:
                rule = self.rules[index]
                layers[path] = inventory.QuantizedLayer(
                    tuple(path.split("/")), rule.kernel, rule.inputs
                )
        return layers


def quantize_model(model, rules, *, on_unused: str = "error"):
    """Wraps an unmodified Linen model so the Conv/Dense modules matched by ``rules`` quantize;
    for a Flax NNX module, returns a quantized copy instead (``bnnlab.intercept_nnx``).

    Args:
      model: any ``flax.linen.Module`` (its code is not changed) or ``flax.nnx.Module`` (it is
        copied; the copy's ``nnx.state`` has the same structure).
      rules: a sequence of ``Rule``; first match wins.
      on_unused: what to do when a rule matches no called module: ``"error"`` (default, the
        message lists the module paths that exist), ``"warn"`` or ``"ignore"``.

    Returns:
      Linen: a ``QuantizedModel`` whose ``init`` gives the same variables as ``model.init``.
      NNX: an ``nnx.Module`` (see ``bnnlab.intercept_nnx``).
    """
    from flax import nnx

    if isinstance(model, nnx.Module):
        from bnnlab import intercept_nnx

        return intercept_nnx.quantize(model, rules, on_unused)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"quantize_model takes a flax.linen.Module or a flax.nnx.Module, got "
            f"{type(model).__name__}."
        )
    return QuantizedModel(model, rules, on_unused=on_unused)

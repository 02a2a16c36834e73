"""Transformers written as any Flax user writes them, made ternary or binary by rules.

``ByteLM`` (a pre-norm decoder over bytes) and ``ViT`` (a pre-norm encoder over image patches)
use only stock Linen modules: ``nn.Embed``, ``nn.MultiHeadDotProductAttention`` (its query, key,
value and output projections are ``nn.DenseGeneral``), ``nn.Dense`` MLPs, ``nn.RMSNorm`` or
``nn.LayerNorm``, and an ``nn.Conv`` patch embedding. Nothing in them knows about quantization:
``bitnet_rules`` turns every projection into BitNet's BitLinear through
``bnnlab.quantize_model`` (parameter tree unchanged), keeping the embeddings and the head in
float as the BitNet papers do:

    BitLinear(x) = q_w(W) · q_a(norm(x))      (docs/transformers.md)

with q_w ternary absmean (b1.58) or binary (BitNet), q_a per-token absmax int8, and ``norm``
the sub-layer normalisation BitNet puts in front of each quantized projection.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bnnlab import intercept

KEEP_FLOAT = ("head",)
NORMS = ("rms", "layer")


def _norm(kind: str, name: str, dtype):
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {kind!r}.")
    return (nn.RMSNorm if kind == "rms" else nn.LayerNorm)(name=name, dtype=dtype)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)) (GELU MLP)."""

    heads: int
    mlp_ratio: int = 4
    norm: str = "rms"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, mask=None):
        width = x.shape[-1]
        y = _norm(self.norm, "attn_norm", self.dtype)(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, name="attn")(
            y, y, mask=mask
        )
        x = x + y
        y = _norm(self.norm, "mlp_norm", self.dtype)(x)
        y = nn.Dense(self.mlp_ratio * width, dtype=self.dtype, name="up")(y)
        y = nn.Dense(width, dtype=self.dtype, name="down")(nn.gelu(y))
        return x + y


class ByteLM(nn.Module):
    """Decoder-only language model over bytes: logits (B, T, vocab) for tokens (B, T).

    Learned positions (at most ``max_len`` tokens), causal self-attention, untied head.
    Tokens may arrive as floats (the input pipeline's dtype); they are cast to int32.
    """

    vocab_size: int = 256
    width: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    max_len: int = 256
    norm: str = "rms"
    dtype: Any = None

    @nn.compact
    def __call__(self, tokens, train: bool = False, progress=None):
        del train, progress  # No dropout, batch statistics or schedules (the zoo's signature).
        tokens = tokens.astype(jnp.int32)
        if tokens.shape[-1] > self.max_len:
            raise ValueError(
                f"ByteLM takes at most max_len={self.max_len} tokens, got {tokens.shape[-1]}."
            )
        x = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, name="embed")(tokens)
        positions = self.param(
            "positions", nn.initializers.normal(0.02), (self.max_len, self.width)
        )
        x = x + positions[: tokens.shape[-1]].astype(x.dtype)
        mask = nn.make_causal_mask(tokens)
        for i in range(self.depth):
            x = Block(self.heads, self.mlp_ratio, self.norm, self.dtype, name=f"block{i}")(x, mask)
        x = _norm(self.norm, "final_norm", self.dtype)(x)
        return nn.Dense(self.vocab_size, dtype=self.dtype, name="head")(x)


class ViT(nn.Module):
    """Vision transformer: non-overlapping ``patch``×``patch`` patches embedded by a strided
    conv, learned positions, pre-norm blocks, mean-pooled tokens, a linear head."""

    num_classes: int = 10
    patch: int = 2
    width: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 2
    norm: str = "layer"
    dtype: Any = None

    @nn.compact
    def __call__(self, images, train: bool = False, progress=None):
        del train, progress  # No dropout, batch statistics or schedules (the zoo's signature).
        p = self.patch
        x = nn.Conv(self.width, (p, p), strides=p, padding="VALID", dtype=self.dtype, name="embed")(
            images
        )
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        positions = self.param("positions", nn.initializers.normal(0.02), (h * w, c))
        x = x + positions.astype(x.dtype)
        for i in range(self.depth):
            x = Block(self.heads, self.mlp_ratio, self.norm, self.dtype, name=f"block{i}")(x)
        x = _norm(self.norm, "final_norm", self.dtype)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(jnp.mean(x, axis=1))


def bitnet_rules(
    kernel="ternary_absmean",
    inputs="token_absmax",
    input_norm: str | None = "rms",
    keep_float=KEEP_FLOAT,
) -> list[intercept.Rule]:
    """Rules making every projection a BitLinear except the modules named in ``keep_float``
    (default: the head; embeddings are not projections), in float as in BitNet, b1.58 and the
    binary ViTs.

    Args:
      kernel: the weight quantizer (``"ternary_absmean"``: b1.58; ``"binary_absmean"``: BitNet).
      inputs: the activation quantizer (``"token_absmax"``: 8-bit per token; None: float).
      input_norm: the sub-layer norm before the activation quantizer (``Rule.input_norm``).
      keep_float: module paths that stay float (a ViT's patch embedding is an ``nn.Conv``
        named ``"embed"``: add it; ``nn.Embed`` is never quantized).
    """
    keep = [intercept.Rule(name) for name in keep_float]
    return [*keep, intercept.Rule(".*", kernel=kernel, inputs=inputs, input_norm=input_norm)]

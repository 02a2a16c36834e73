"""The optimizer from the config: weight decay per parameter group, AdderNet's gradient
scaling, frozen parameters, optional gradient clipping, around SGD or Adam driven by the
learning-rate schedule (``bnnlab.train.schedule``)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from bnnlab.layers import inventory


def weight_decay_tree(params, config, layers: dict[str, inventory.QuantizedLayer]):
    """Per-parameter decay: the first matching ``weight_decay_rules`` regex, else 0 inside
    layers whose quantizer opts out (SiMaN), else ``config.weight_decay``."""
    default_mask = inventory.weight_decay_mask(params, layers)
    flat_mask = traverse_util.flatten_dict(default_mask)
    rules = [(re.compile(pattern), float(wd)) for pattern, wd in config.weight_decay_rules]
    decay = {}
    for key in flat_mask:
        path = "/".join(key)
        rule = next((wd for pattern, wd in rules if pattern.fullmatch(path)), None)
        if rule is not None:
            decay[key] = rule
        else:
            decay[key] = float(config.weight_decay) if flat_mask[key] else 0.0
    return traverse_util.unflatten_dict(decay)


def scale_adder_gradients(eta: float = 0.2) -> optax.GradientTransformation:
    r"""AdderNet's adaptive learning-rate scaling: g ← g·η·√k / ‖g‖₂ per parameter.

    Applied to each adder layer's kernel gradient (k = its number of elements), the result has
    ℓ2 norm exactly η·√k before weight decay and momentum (the reference folds this into the
    backward pass with η = 0.2); an exactly-zero gradient stays 0.

    References:
      Chen et al. "AdderNet", CVPR 2020, arXiv 1912.13200, §3.3.
    """

    def update(updates, state, params=None):
        del params  # Unused.

        def scale(g):
            return g * (eta * jnp.sqrt(float(g.size)) / jnp.maximum(jnp.linalg.norm(g), 1e-12))

        return jax.tree.map(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def adder_mask(params, adder_paths):
    """True for the kernels of the given adder layers."""
    flat = traverse_util.flatten_dict(params, sep="/")
    kernels = {f"{p}/kernel" for p in adder_paths}
    return traverse_util.unflatten_dict({k: k in kernels for k in flat}, sep="/")


def binary_kernel_mask(params, layers: dict[str, inventory.QuantizedLayer]):
    """True for the latent kernels of layers with a kernel quantizer."""
    kernels = {q.path + ("kernel",) for q in layers.values() if q.kernel_quantizer is not None}
    flat = traverse_util.flatten_dict(params)
    if not kernels & set(flat):
        raise ValueError(
            "config.optimizer = 'case' needs binary layers (a kernel quantizer); this model has "
            "none."
        )
    return traverse_util.unflatten_dict({k: k in kernels for k in flat})


def freeze_mask(params, pattern: str):
    """True for parameters whose '/'-joined path fully matches ``pattern``."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"config.freeze = {pattern!r} is not a regex: {e}.") from e
    flat = traverse_util.flatten_dict(params, sep="/")
    mask = {k: bool(regex.fullmatch(k)) for k in flat}
    if not any(mask.values()):
        raise ValueError(
            f"config.freeze = {pattern!r} matches no parameter; paths look like {sorted(flat)[:3]}."
        )
    return traverse_util.unflatten_dict(mask, sep="/")


def create(config, params, layers, lr, adder_paths=()):
    """(optax transform, per-parameter decay tree) for the learning-rate schedule ``lr``
    (``Schedule.lr``)."""
    decay = weight_decay_tree(params, config, layers)
    parts = []
    if config.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if adder_paths and config.adder_eta > 0:
        parts.append(
            optax.masked(scale_adder_gradients(config.adder_eta), adder_mask(params, adder_paths))
        )

    decays = []
    for value in sorted({v for v in jax.tree.leaves(decay) if v > 0}):
        mask = jax.tree.map(lambda v, value=value: v == value, decay)
        decays.append(optax.add_decayed_weights(value, mask=mask))
    freeze = []
    if config.freeze:
        # After the decay, so frozen parameters do not move at all.
        freeze.append(optax.masked(optax.set_to_zero(), freeze_mask(params, config.freeze)))
    if config.optimizer == "adamw":
        # Decoupled decay (torch.optim.AdamW, BitNet's optimizer): w ← w − lr·(adam(g) + λ·w).
        parts += [optax.scale_by_adam(b1=config.b1, b2=config.b2), *decays, *freeze]
        parts.append(optax.scale_by_learning_rate(lr))
        return optax.chain(*parts), decay
    # Coupled L2 as torch.optim's weight_decay: added to the gradient before momentum/Adam.
    parts += [*decays, *freeze]
    sgd = optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov)
    if config.optimizer == "sgd":
        parts.append(sgd)
    elif config.optimizer == "case":
        # larq's CaseOptimizer (QuickNet): Adam for the binary layers' latent kernels, SGD with
        # momentum for every other parameter, both on the lr schedule.
        scale = float(config.binary_lr_scale)
        adam = optax.adam(lambda step: lr(step) * scale, b1=config.b1, b2=config.b2)
        labels = jax.tree.map(
            lambda binary: "binary" if binary else "float", binary_kernel_mask(params, layers)
        )
        parts.append(optax.multi_transform({"binary": adam, "float": sgd}, labels))
    else:
        parts.append(optax.adam(lr, b1=config.b1, b2=config.b2))
    return optax.chain(*parts), decay

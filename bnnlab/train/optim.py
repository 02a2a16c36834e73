"""The optimizer from the config: learning-rate schedules of the papers, weight decay per
parameter group, optional gradient clipping."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from bnnlab.layers import inventory


def epoch_of(step, steps_per_epoch: int, unit: str):
    """Training time in epochs: whole epochs (the papers step schedules per epoch) or exact."""
    step = jnp.asarray(step, jnp.float32)
    if unit == "epoch":
        return jnp.floor(step / steps_per_epoch)
    return step / steps_per_epoch


def learning_rate_fn(config, steps_per_epoch: int, total_steps: int):
    """lr(step). Schedules (t = epoch + ``lr_epoch_offset``, T = ``lr_schedule_epochs`` or the
    run's length in epochs, w = warm-up epochs):

    * cosine: lr·(t+1)/w for t < w, then lr·½(1 + cos(π(t − w + 1)/(T − w + 1))) (ReCU/SiMaN's
      warm-up + CosineAnnealingLR(T_max = T − 4) for w = 5; plain cosine for w = 0, which with
      offset 1 and T = 400 over 399 epochs is AdderNet's 0.05·(1 + cos(πt/400)), t = 1 … 399).
    * linear: lr·(1 − t/T) (Bi-Real/ReActNet's Adam recipe; with offset 1, their scheduler
      stepped at the start of each epoch).
    * constant, or piecewise: ``lr_values[i]`` between ``lr_boundaries`` (in epochs).
    """
    run_epochs = total_steps / steps_per_epoch
    total_epochs = config.lr_schedule_epochs if config.lr_schedule_epochs > 0 else run_epochs
    w, base = config.warmup_epochs, config.lr

    def schedule(step):
        t = epoch_of(step, steps_per_epoch, config.schedule_unit) + config.lr_epoch_offset
        if config.schedule == "constant":
            lr = jnp.full_like(t, base)
        elif config.schedule == "linear":
            lr = base * jnp.maximum(0.0, 1.0 - t / total_epochs)
        elif config.schedule == "piecewise":
            index = jnp.sum(t >= jnp.asarray(config.lr_boundaries, jnp.float32))
            lr = jnp.asarray(config.lr_values, jnp.float32)[index]
        else:
            shift = max(w - 1, 0)
            cos = 0.5 * base * (1 + jnp.cos(math.pi * (t - shift) / (total_epochs - shift)))
            lr = cos if w == 0 else jnp.where(t < w, base * (t + 1) / w, cos)
        return lr

    return schedule


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


def create(config, params, layers, steps_per_epoch: int, total_steps: int, adder_paths=()):
    """(optax transform, lr schedule, per-parameter decay tree)."""
    lr = learning_rate_fn(config, steps_per_epoch, total_steps)
    decay = weight_decay_tree(params, config, layers)
    parts = []
    if config.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if adder_paths and config.adder_eta > 0:
        parts.append(
            optax.masked(scale_adder_gradients(config.adder_eta), adder_mask(params, adder_paths))
        )

    # Coupled L2 as torch.optim's weight_decay: added to the gradient before momentum/Adam.
    for value in sorted({v for v in jax.tree.leaves(decay) if v > 0}):
        mask = jax.tree.map(lambda v, value=value: v == value, decay)
        parts.append(optax.add_decayed_weights(value, mask=mask))
    if config.freeze:
        # After the decay, so frozen parameters do not move at all.
        parts.append(optax.masked(optax.set_to_zero(), freeze_mask(params, config.freeze)))
    if config.optimizer == "sgd":
        parts.append(optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov))
    else:
        parts.append(optax.adam(lr, b1=config.b1, b2=config.b2))
    return optax.chain(*parts), lr, decay

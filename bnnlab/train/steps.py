"""The train state and the pure, jit-able train and eval steps."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from bnnlab.diagnostics import tracking
from bnnlab.layers import inventory
from bnnlab.train import optim

MUTABLE = ("batch_stats", "quant_state")
TRACKED = "diagnostics"  # the collection QuantConv/QuantDense sow their binary codes into


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    quant_state: Any
    opt_state: Any
    diag: Any = None  # flip tracking of the binary layers ({} when diagnostics are off)

    def variables(self, params=None) -> dict:
        return {
            "params": self.params if params is None else params,
            "batch_stats": self.batch_stats,
            "quant_state": self.quant_state,
        }


def init_state(model, tx, rng, images, track_layers=None) -> TrainState:
    """Initial state; ``track_layers`` (an inventory) turns on per-step flip tracking."""
    variables = model.init(rng, images, train=True)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        quant_state=variables.get("quant_state", {}),
        opt_state=tx.init(params),
        diag=tracking.init_tracking(params, track_layers) if track_layers else {},
    )


def training_progress(step, steps_per_epoch: int, total_steps: int, unit: str):
    """Fraction of training done, as quantizer schedules see it (per epoch, like the papers'
    once-per-epoch buffer updates, or per step)."""
    total = total_steps / steps_per_epoch
    return jnp.clip(optim.epoch_of(step, steps_per_epoch, unit) / total, 0.0, 1.0)


def cross_entropy(logits, labels, smoothing: float = 0.0):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()


def distillation_loss(student_logits, teacher_logits):
    """ReActNet's distributional loss: cross-entropy to the teacher's softmax."""
    targets = jax.lax.stop_gradient(jax.nn.softmax(teacher_logits))
    return optax.softmax_cross_entropy(student_logits, targets).mean()


def loss_and_grads(
    state: TrainState,
    params,
    batch,
    progress,
    teacher_logits=None,
    *,
    model,
    label_smoothing: float = 0.0,
    distill_weight: float = 1.0,
):
    """((loss, (logits, variable updates)), grads) of the training loss at ``params``."""

    def loss_fn(params):
        logits, updates = model.apply(
            state.variables(params),
            batch["image"],
            train=True,
            progress=progress,
            mutable=[*MUTABLE, TRACKED] if state.diag else list(MUTABLE),
        )
        loss = cross_entropy(logits, batch["label"], label_smoothing)
        if teacher_logits is not None:
            kd = distillation_loss(logits, teacher_logits)
            loss = distill_weight * kd + (1.0 - distill_weight) * loss
        return loss, (logits, updates)

    return jax.value_and_grad(loss_fn, has_aux=True)(params)


def train_step(
    state: TrainState,
    batch,
    teacher_variables=None,
    *,
    model,
    tx,
    lr_fn,
    layers,
    steps_per_epoch: int,
    total_steps: int,
    schedule_unit: str,
    label_smoothing: float = 0.0,
    teacher=None,
    distill_weight: float = 1.0,
):
    """One optimizer step. Quantizer schedules come from the step, so nothing recompiles."""
    progress = training_progress(state.step, steps_per_epoch, total_steps, schedule_unit)
    # SiMaN's latent-weight clip: the reference does it in place at the start of each forward.
    params = inventory.project(state.params, layers, progress)
    teacher_logits = None
    if teacher is not None:
        teacher_logits = teacher.apply(teacher_variables, batch["image"], train=False)
    (loss, (logits, updates)), grads = loss_and_grads(
        state,
        params,
        batch,
        progress,
        teacher_logits,
        model=model,
        label_smoothing=label_smoothing,
        distill_weight=distill_weight,
    )
    changes, opt_state = tx.update(grads, state.opt_state, params)
    new_params = optax.apply_updates(params, changes)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
        "lr": lr_fn(state.step),
        "progress": progress,
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(new_params),
    }
    for layer in layers.values():
        for q in (layer.kernel_quantizer, layer.input_quantizer):
            if q is not None:
                metrics.update(q.schedule(progress))
    new_state = state.replace(
        step=state.step + 1,
        params=new_params,
        batch_stats=updates.get("batch_stats", state.batch_stats),
        quant_state=updates.get("quant_state", state.quant_state),
        opt_state=opt_state,
        diag=tracking.update_tracking(state.diag, tracking.forward_codes(updates.get(TRACKED, {}))),
    )
    return new_state, metrics


def diagnostics_step(
    state: TrainState,
    batch,
    *,
    model,
    layers,
    steps_per_epoch: int,
    total_steps: int,
    schedule_unit: str,
):
    """(statistics, state with a fresh tracking window): per-layer weight statistics, flip
    ratio and empirical dead fraction over the window, and the sign balance of every binarised
    input on ``batch``."""
    progress = training_progress(state.step, steps_per_epoch, total_steps, schedule_unit)
    out = tracking.layer_statistics(state.params, layers, progress, state.diag)
    _, captured = model.apply(
        state.variables(),
        batch["image"],
        train=False,
        progress=progress,
        mutable=["intermediates"],
    )
    out.update(tracking.activation_balance(captured.get("intermediates", {})))
    return out, state.replace(diag=tracking.reset_window(state.diag))


def eval_step(state: TrainState, batch, *, model):
    """Sums of correct predictions, loss and examples (padding masked out)."""
    logits = model.apply(state.variables(), batch["image"], train=False)
    mask = batch["mask"].astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return {
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "loss_sum": jnp.sum(losses * mask),
        "count": jnp.sum(mask),
    }

"""The train state and the pure, jit-able train and eval steps."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from bnnlab.diagnostics import tracking
from bnnlab.layers import inventory, sown
from bnnlab.train import schedule as schedule_lib

MUTABLE = ("batch_stats", "quant_state")


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    quant_state: Any
    opt_state: Any
    tracking: Any = None  # flip tracking of the binary layers ({} when diagnostics are off)

    def variables(self, params=None, collections=None) -> dict:
        """The model's variables; ``collections`` adds read-only ones (the reconfigurable
        model's ``task``)."""
        return {
            "params": self.params if params is None else params,
            "batch_stats": self.batch_stats,
            "quant_state": self.quant_state,
            **(collections or {}),
        }


def state_from_variables(variables, tx, track_layers=None) -> TrainState:
    """The step-0 state of a model with initial ``variables`` (``model.init``'s output)."""
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        quant_state=variables.get("quant_state", {}),
        opt_state=tx.init(params),
        tracking=tracking.init_tracking(params, track_layers) if track_layers else {},
    )


def init_state(model, tx, rng, images, track_layers=None) -> TrainState:
    """Initial state; ``track_layers`` (an inventory) turns on per-step flip tracking."""
    return state_from_variables(model.init(rng, images, train=True), tx, track_layers)


def cross_entropy(logits, labels, smoothing: float = 0.0):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()


def integer_cross_entropy(logits, labels, smoothing: float = 0.0):
    """The same loss from integer labels, without smoothing: for models that mask logits (the
    reconfigurable model sets other tasks' classes to −1e9, where smoothing would put mass)."""
    if smoothing:
        raise ValueError(f"integer_cross_entropy has no label smoothing, got {smoothing}.")
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


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
    collections=None,
    *,
    model,
    label_smoothing: float = 0.0,
    distill_weight: float = 1.0,
    loss_fn=cross_entropy,
):
    """((loss, (logits, variable updates)), grads) of the training loss at ``params``."""

    def objective(params):
        logits, updates = model.apply(
            state.variables(params, collections),
            batch["image"],
            train=True,
            progress=progress,
            mutable=[*MUTABLE, sown.TRACKING] if state.tracking else list(MUTABLE),
        )
        value = loss_fn(logits, batch["label"], label_smoothing)
        if teacher_logits is not None:
            kd = distillation_loss(logits, teacher_logits)
            value = distill_weight * kd + (1.0 - distill_weight) * value
        return value, (logits, updates)

    return jax.value_and_grad(objective, has_aux=True)(params)


def train_step(
    state: TrainState,
    batch,
    collections=None,
    teacher_variables=None,
    *,
    model,
    tx,
    schedule: schedule_lib.Schedule,
    layers,
    label_smoothing: float = 0.0,
    teacher=None,
    distill_weight: float = 1.0,
    loss_fn=cross_entropy,
):
    """One optimizer step. Quantizer schedules come from the step, so nothing recompiles;
    ``collections`` are extra read-only variables of the model (the reconfigurable model's
    ``task``), ``teacher_variables`` the distillation teacher's."""
    progress = schedule.progress(state.step)
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
        collections,
        model=model,
        label_smoothing=label_smoothing,
        distill_weight=distill_weight,
        loss_fn=loss_fn,
    )
    changes, opt_state = tx.update(grads, state.opt_state, params)
    new_params = optax.apply_updates(params, changes)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
        "lr": schedule.lr(state.step),
        "progress": progress,
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(new_params),
    }
    for layer in layers.values():
        for q in (layer.kernel_quantizer, layer.input_quantizer):
            if q is not None:
                metrics.update(q.schedule(progress))
    codes = tracking.forward_codes(updates.get(sown.TRACKING, {}))
    new_state = state.replace(
        step=state.step + 1,
        params=new_params,
        batch_stats=updates.get("batch_stats", state.batch_stats),
        quant_state=updates.get("quant_state", state.quant_state),
        opt_state=opt_state,
        tracking=tracking.update_tracking(state.tracking, codes),
    )
    return new_state, metrics


def diagnostics_step(
    state: TrainState,
    batch,
    collections=None,
    *,
    model,
    layers,
    schedule: schedule_lib.Schedule,
):
    """(statistics, state with a fresh tracking window): per-layer weight statistics, flip
    ratio and empirical dead fraction over the window, and the sign balance of every binarised
    input on ``batch``."""
    progress = schedule.progress(state.step)
    out = tracking.layer_statistics(state.params, layers, progress, state.tracking)
    _, captured = model.apply(
        state.variables(collections=collections),
        batch["image"],
        train=False,
        progress=progress,
        mutable=[sown.INTERMEDIATES],
    )
    out.update(tracking.activation_balance(captured.get(sown.INTERMEDIATES, {})))
    return out, state.replace(tracking=tracking.reset_window(state.tracking))


def eval_step(state: TrainState, batch, collections=None, *, model):
    """Sums of correct predictions, loss and predictions (padding masked out); a sequence
    model's predictions are its tokens, so its accuracy and loss are per token."""
    logits = model.apply(state.variables(collections=collections), batch["image"], train=False)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    mask = batch["mask"].astype(jnp.float32)
    mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (losses.ndim - 1)), losses.shape)
    return {
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "loss_sum": jnp.sum(losses * mask),
        "count": jnp.sum(mask),
    }

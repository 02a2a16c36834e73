"""The recipes' jitted training steps against NumPy: what each step does to the weights.

Resume and export tests compare bnnlab with itself, so a step that forgot SiMaN's projection or
stored a stale code would still pass them. Here each recipe's real step (``experiment.build`` of the
recipe's ``:runlocal`` config, one block per stage, tiny width) runs from a known state, and the
new weights must equal a NumPy computation of the released code's update:

    W' = P_p(W)                                (SiMaN's clip, p = 15·(1 − epoch/T); else W' = W)
    m ← 0.9·m + ∂L/∂W' + λ_group·W'            (torch.optim.SGD: coupled decay, dampening 0)
    W ← W' − lr(epoch)·m

with the parameter groups written out by name from the released code, the learning rate and
quantizer schedules from their formulas, and ∂L/∂W' the model's gradient at the NumPy-projected
weights (the gradients themselves are tested against closed forms elsewhere).
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from bnnlab.train import experiment

import recipes
import reference


def recipe(name: str, arg: str = "runlocal", **overrides):
    """A recipe at batch 16 on one device without diagnostics, then ``overrides``."""
    small = {"batch_size": 16, "mesh": (("data", 1),), "diagnostics_every_steps": 0}
    return recipes.config(name, arg, **{**small, **overrides})


def flat(tree):
    return {
        k: np.asarray(v, np.float64) for k, v in traverse_util.flatten_dict(tree, sep="/").items()
    }


def numpy_clip(w, percent):
    """SiMaN's projection: sign(D)·clip(|D|, P_p, P_{100−p}), D = W − mean_f W, layer-wide
    percentiles with linear interpolation (np.percentile, as the released code)."""
    d = w - w.mean(axis=tuple(range(w.ndim - 1)), keepdims=True)
    low, high = np.percentile(np.abs(d), [percent, 100 - percent])
    return np.sign(d) * np.clip(np.abs(d), low, high)


def warmup_cosine(epoch, total, base=0.1, warmup=2):
    """ReCU/SiMaN: lr·(t+1)/w for t < w, then CosineAnnealingLR(T_max = T − w + 1) from t = w − 1
    (``:runlocal`` shortens the warm-up from 5 to 2 epochs)."""
    if epoch < warmup:
        return base * (epoch + 1) / warmup
    shift = warmup - 1
    return 0.5 * base * (1 + math.cos(math.pi * (epoch - shift) / (total - shift)))


class Step:
    """One recipe's experiment, its jitted step and the gradient at chosen parameters."""

    def __init__(self, config):
        self.config = config
        self.exp = experiment.build(config)
        self.batch = self.exp.tasks[0].loader.batch(0)
        model, labels = self.exp.model, jnp.asarray(self.batch["label"])

        def loss(params, batch_stats, quant_state, progress):
            logits, _ = model.apply(
                {"params": params, "batch_stats": batch_stats, "quant_state": quant_state},
                jnp.asarray(self.batch["image"]),
                train=True,
                progress=progress,
                mutable=["batch_stats", "quant_state"],
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        self.grad = jax.jit(jax.grad(loss))

    def run(self, state):
        """(state before as NumPy, state after, metrics) of one step from ``state``."""
        before = jax.tree.map(np.asarray, state)  # the step donates its input
        after, metrics = self.exp.train_step(state, self.exp.device_batch(self.batch), None, None)
        return before, after, jax.device_get(metrics)

    def gradient(self, state, params, progress):
        cast = functools.partial(jax.tree.map, lambda a: jnp.asarray(a, jnp.float32))
        g = self.grad(cast(params), state.batch_stats, state.quant_state, jnp.float32(progress))
        return flat(g)

    def epoch_of(self, step):
        return step // self.exp.steps_per_epoch


def simaN_decay(path):
    """The released SiMaN CIFAR code: decay 0 for parameters named 'layer…conv…' (the binary
    3×3 convs and their α), 5e-4 for everything else, the binary 1×1 shortcut (named
    'shortcut.0') included."""
    return 0.0 if re.fullmatch(r"stage\d_block\d/conv[12]/(kernel|scale)", path) else 5e-4


@pytest.mark.slow
def test_simaN_step_projects_decays_by_group_and_stores_the_code():
    step = Step(recipe("simaN_r18", **{"model.width": 0.125, "model.stage_sizes": (1, 1, 1, 1)}))
    total_epochs = step.config.num_epochs
    state = step.exp.init_state()
    layers = [p for p, layer in step.exp.layers.items() if layer.kernel_quantizer is not None]
    assert any("shortcut" in p for p in layers)  # the binary 1×1 downsample is there
    trace = None
    for k in range(2):  # two steps, so the momentum buffer matters
        before, state, metrics = step.run(state)
        epoch = step.epoch_of(int(before.step))
        percent = 15.0 * (1 - epoch / total_epochs)
        np.testing.assert_allclose(metrics["siman_clip_percent"], percent, rtol=1e-6)
        params = flat(before.params)
        for path in layers:
            params[f"{path}/kernel"] = numpy_clip(params[f"{path}/kernel"], percent)
        grads = step.gradient(before, traverse_util.unflatten_dict(params, sep="/"), epoch / 60)
        lr = warmup_cosine(epoch, total_epochs)
        if trace is None:
            trace = {p: np.zeros_like(v) for p, v in params.items()}
        trace = {p: 0.9 * trace[p] + grads[p] + simaN_decay(p) * params[p] for p in params}
        expected = {p: params[p] - lr * trace[p] for p in params}
        got = flat(state.params)
        for path, value in expected.items():
            np.testing.assert_allclose(got[path], value, rtol=2e-5, atol=2e-6, err_msg=path)

        # The stored code is the released rule's code of the projected weights of this step.
        codes = flat(state.quant_state)
        for path in layers:
            w_hat = reference.standardize(reference.per_filter(params[f"{path}/kernel"]), 1e-5)
            stored = reference.per_filter(codes[f"{path}/kernel_state"])
            magnitude = np.abs(w_hat)
            median = np.sort(magnitude, axis=0)[(len(magnitude) - 1) // 2]
            clear = np.abs(magnitude - median) > 1e-5 * median  # float32 vs float64 ties
            np.testing.assert_array_equal(
                stored[clear], reference.siman_code(w_hat)[clear], err_msg=f"{path} step {k}"
            )


@pytest.mark.slow
def test_recu_step_uses_tau_of_the_epoch():
    """Mid-training, τ(epoch/T) sets the gradient mask; the step's update must be the SGD
    update of the gradient at that τ (decay 5e-4 on every parameter, as the released code)."""
    step = Step(recipe("recu_r18", **{"model.width": 0.125, "model.stage_sizes": (1, 1, 1, 1)}))
    total = step.config.num_epochs
    state = step.exp.init_state()
    at = 37 * step.exp.steps_per_epoch + 5  # inside epoch 37
    # The optimizer's schedule counts its own steps; a resumed run restores both counters.
    opt_state = optax.tree_utils.tree_set(state.opt_state, count=jnp.int32(at))
    state = state.replace(step=jnp.int32(at), opt_state=opt_state)
    before, state, metrics = step.run(state)
    progress = 37 / total
    tau = 0.85 + (0.99 - 0.85) * (math.exp(progress) - 1) / (math.e - 1)
    np.testing.assert_allclose(metrics["recu_tau"], tau, rtol=1e-6)
    np.testing.assert_allclose(metrics["lr"], warmup_cosine(37, total), rtol=1e-6)
    params = flat(before.params)
    grads = step.gradient(before, before.params, progress)
    # The mask depends on τ: a step at another τ would have another gradient.
    other = step.gradient(before, before.params, 0.0)
    kernels = [p for p in grads if p.endswith("conv1/kernel")]
    assert any(np.abs(grads[p] - other[p]).max() > 1e-3 * np.abs(grads[p]).max() for p in kernels)
    lr = warmup_cosine(37, total)
    got = flat(state.params)
    for path, value in params.items():
        expected = value - lr * (grads[path] + 5e-4 * value)  # first step: momentum buffer 0
        np.testing.assert_allclose(got[path], expected, rtol=2e-5, atol=2e-6, err_msg=path)


def test_adder_step_scales_each_filter_gradient_to_0_2_sqrt_k():
    step = Step(recipe("adder_r20", **{"model.width": 0.25, "model.stage_sizes": (1, 1, 1)}))
    state = step.exp.init_state()
    before, state, metrics = step.run(state)
    # Released: lr(t) = 0.05·(1 + cos(π t / 400)) at the start of epoch t = 1 … 399; :runlocal
    # keeps the offset and scales 400 to its epoch count + 1.
    total = step.config.num_epochs + 1
    lr = 0.05 * (1 + math.cos(math.pi * 1 / total))
    np.testing.assert_allclose(metrics["lr"], lr, rtol=1e-6)
    params, got = flat(before.params), flat(state.params)
    grads = step.gradient(before, before.params, 0.0)
    adder = [p for p in params if p.endswith("kernel") and not p.startswith(("stem", "head"))]
    assert len(adder) == 8  # 3 blocks × 2 adder 3×3 convs + 2 adder 1×1 shortcuts
    for path, value in params.items():
        # First step: the update is lr·(g̃ + 5e-4·W), g̃ the scaled gradient for adder kernels.
        applied = (value - got[path]) / lr - 5e-4 * value
        if path in adder:
            k = value.size
            np.testing.assert_allclose(np.linalg.norm(applied), 0.2 * math.sqrt(k), rtol=1e-4)
            expected = grads[path] * 0.2 * math.sqrt(k) / np.linalg.norm(grads[path])
            np.testing.assert_allclose(applied, expected, rtol=1e-3, atol=1e-4, err_msg=path)
        else:
            np.testing.assert_allclose(applied, grads[path], rtol=1e-3, atol=1e-5, err_msg=path)

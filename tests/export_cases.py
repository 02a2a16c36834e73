"""Shared by the export tests: zoo models with BatchNorm statistics away from their init."""

import functools

import jax
import numpy as np

from bnnlab import models, runs

import recipes


def recipe(name, arg="runlocal"):
    return recipes.config(name, arg)


def perturbed(variables, seed=0):
    """BatchNorm statistics, scales and biases away from their init (γ=1, μ=0, σ²=1...)."""
    rng = np.random.default_rng(seed)

    def leaf(path, a):
        name = str(path[-1].key)
        a = np.asarray(a)
        if name == "mean":
            return (rng.normal(size=a.shape) * 0.5).astype(a.dtype)
        if name == "var":
            return rng.uniform(0.3, 2.0, size=a.shape).astype(a.dtype)
        if name in ("scale", "bias"):
            return (a + 0.3 * rng.normal(size=a.shape)).astype(a.dtype)
        return a

    return jax.tree_util.tree_map_with_path(leaf, variables)


def model_and_variables(config, batch=8, seed=0):
    ref = runs.model_ref(config)
    model = models.from_ref(ref)
    shape = runs.input_shape(config)
    x = jax.random.normal(jax.random.key(seed + 1), (batch, *shape))
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(seed), x)
    variables = {
        k: v for k, v in variables.items() if k in ("params", "batch_stats", "quant_state")
    }
    variables = perturbed(variables, seed)
    return ref, model, variables, shape, x

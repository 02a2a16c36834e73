"""Reading a run back: config, model description and checkpoint, once, as a dataclass."""

import jax
import numpy as np
import pytest

from bnnlab import runs, train

import recipes


def test_load_reads_config_model_and_newest_checkpoint(tmp_path):
    config = recipes.config("smoke", total_steps=8, checkpoint_every_steps=4)
    train.train_and_evaluate(config, tmp_path)
    run = runs.load(tmp_path)
    assert run.step == 8 and run.steps == (4, 8)
    assert run.config.model_name == config.model_name
    assert run.model_ref == runs.model_ref(config)
    assert run.input_shape == (8, 8, 1)
    assert set(run.variables) <= set(runs.COLLECTIONS) and "params" in run.variables
    logits = run.model.apply(run.variables, np.zeros((2, *run.input_shape)), train=False)
    assert logits.shape == (2, 10)
    earlier = runs.load(tmp_path, step=4)
    assert earlier.step == 4
    for a, b in zip(
        jax.tree.leaves(earlier.variables), jax.tree.leaves(run.restore(4)), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        runs.load(tmp_path)
    config = recipes.config("rbnn_reactnet", "runlocal", model_name="resnet18_cifar")
    with pytest.raises(ValueError, match="builds 'rbnn_reactnet'"):
        runs.build_model(config)

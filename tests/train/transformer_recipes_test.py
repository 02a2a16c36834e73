"""The transformer recipes train end to end through the standard loop: the byte LM on the
standard library's help text (per-token loss and accuracy) and the ViT on digits."""

import math

import numpy as np
import pytest

from bnnlab.train import experiment, loop

import recipes


@pytest.mark.parametrize(
    "name,arg",
    [
        ("bitnet_lm", "runlocal"),
        ("bitnet_lm", "runlocal,weights=binary"),
        ("bitnet_lm", "runlocal,weights=float"),
        ("bitnet_vit", "runlocal"),
    ],
)
def test_transformer_recipe_trains_and_evaluates(tmp_path, name, arg):
    config = recipes.config(
        name,
        arg,
        total_steps=6,
        log_every_steps=3,
        checkpoint_every_steps=6,
        eval_batch_size=64,
        mesh=(("data", 1),),
        progress_bar=False,
        **{"model.width": 32, "model.depth": 1},
    )
    exp = experiment.build(config)
    # q, k, v, out, up, down: the embedding and head stay float; the float model has none.
    assert len(exp.layers) == (0 if "float" in arg else 6)
    final = loop.run(exp, tmp_path)
    assert np.isfinite(final["loss"])
    if name == "bitnet_lm":
        # Six steps in, the per-byte loss is well below a uniform guess over 256 bytes.
        assert final["loss"] < math.log(256)
        assert 0.0 < final["accuracy"] < 1.0

"""ResNets: parameter counts against hand counts of the paper architectures, the float
baseline, and binary layers where the papers put them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import layers, models
from bnnlab.models import QuantSpec

from param_count import conv3, count

SIMAN = QuantSpec("siman", "siman_act", "mean_abs")
RECU = QuantSpec("recu", "recu_act", "uniform")


def test_cifar_resnet18_recu_hand_count():
    # Stem 3×3 3→64 + BN; four stages of two standard blocks (two 3×3 convs, each with BN and
    # a per-channel α); parameter-free downsample; BN1d(512) + FC(512→10).
    convs = conv3(3, 64)
    bn_and_alpha = 2 * 64
    cin = 64
    for c in (64, 128, 256, 512):
        for b in range(2):
            convs += conv3(cin if b == 0 else c, c) + conv3(c, c)
            bn_and_alpha += 2 * (2 * c) + 2 * c  # two BNs (γ, β) and two α
            cin = c
    head = 2 * 512 + 512 * 10 + 10
    expected = convs + bn_and_alpha + head
    assert expected == 11_005_002
    assert count(models.get("resnet18_cifar", quant=RECU), 32) == expected


def test_cifar_resnet18_simaN_adds_binary_downsample():
    # Three binarised 1×1 stride-2 shortcut convs (64→128, 128→256, 256→512) with BN and α.
    extra = sum(cin * cout + 3 * cout for cin, cout in ((64, 128), (128, 256), (256, 512)))
    model = models.get("resnet18_cifar", quant=SIMAN, shortcut="block_conv")
    assert count(model, 32) == 11_005_002 + extra == 11_179_722  # ≈ 11.2 M


def test_resnet20_bireal_hand_count():
    convs, other, cin = conv3(3, 16), 2 * 16, 16
    for c in (16, 32, 64):
        for _ in range(6):
            convs += conv3(cin, c)
            other += 3 * c  # BN γ, β and α
            cin = c
    other += 2 * 64 + 64 * 10 + 10
    assert count(models.get("resnet20_cifar", quant=RECU), 32) == convs + other == 270_522


@pytest.mark.parametrize(
    "name,blocks,expected",
    [
        ("resnet18_imagenet", (4, 4, 4, 4), 11_694_376),
        ("resnet34_imagenet", (6, 8, 12, 6), 21_806_248),
    ],
)
def test_imagenet_bireal_hand_count(name, blocks, expected):
    # 7×7 stem; Bi-Real units (one 3×3 conv + BN + α each); float 1×1 downsample + BN at the
    # first unit of stages 2–4; BN1d(512) + FC(512→1000). Without α these are the familiar
    # 11.69 M / 21.80 M of ResNet-18/34.
    total, cin = 49 * 3 * 64 + 2 * 64, 64
    for n, c in zip(blocks, (64, 128, 256, 512), strict=True):
        for _ in range(n):
            total += conv3(cin, c) + 3 * c
            if cin != c:
                total += cin * c + 2 * c
            cin = c
    total += 2 * 512 + 512 * 1000 + 1000
    assert total == expected
    assert count(models.get(name, num_classes=1000, quant=RECU), 224) == expected


def test_float_baseline_has_no_alpha_and_same_binary_paths():
    float_model = models.get("resnet18_cifar")
    assert count(float_model, 32) == 11_005_002 - 3840  # the 16 binary convs' α
    x = jnp.ones((2, 8, 8, 3))
    assert models.blocks.FLOAT.is_float
    found = layers.inventory.find(models.get("resnet18_cifar", quant=RECU), x, train=True)
    binary = [p for p, layer in found.items() if layer.kernel_quantizer is not None]
    assert len(binary) == 16 and all(p.startswith("stage") for p in binary)
    assert found["stem/conv"].kernel_quantizer is None  # first conv stays float


def test_reactnet_uses_rsign_and_rprelu():
    model = models.get("reactnet18", quant=QuantSpec("magnitude_aware_sign"), width=0.25)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3))))
    unit = v["params"]["stage2_unit1"]
    assert set(unit) == {"rsign", "conv", "bn", "shortcut", "act"}
    assert set(unit["act"]["RPReLU_0"]) == {"gamma", "beta", "zeta"}
    assert "bn" not in v["params"]["head"]


def test_tiny_model_forward_is_finite_and_binary_inside():
    model = models.get("resnet_tiny", quant=SIMAN)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32)
    v = model.init(jax.random.key(0), x, train=True)
    y, updates = model.apply(v, x, train=True, progress=0.5, mutable=["batch_stats", "quant_state"])
    assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))
    code = updates["quant_state"]["stage1_unit1"]["conv"]["kernel_state"]
    assert set(np.unique(np.asarray(code))) == {0.0, 1.0}

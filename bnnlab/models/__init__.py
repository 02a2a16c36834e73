"""Model zoo: the architectures of the ReCU, SiMaN, Bi-Real and ReActNet papers and larq zoo's
QuickNet, by name.

``models.get(name, num_classes=..., quant=QuantSpec(...), width=..., **overrides)`` builds a
Linen module called as ``model(x, train=..., progress=...)``; ``quant=FLOAT`` (the default)
gives the float baseline of the same architecture. The first conv and the classifier are
always full precision.
"""

from __future__ import annotations

import dataclasses
import functools

from bnnlab import registry
from bnnlab.models import blocks, quicknet, resnet, transformer, vgg
from bnnlab.models.blocks import FLOAT, QuantSpec

REGISTRY = registry.Registry("model")

_CIFAR_R18 = dict(stage_sizes=(2, 2, 2, 2), stage_features=(64, 128, 256, 512))
_IMAGENET = dict(stage_features=(64, 128, 256, 512), block="bireal", imagenet=True)

# name → (constructor, architecture defaults). Paper-specific choices (shortcut, activation,
# BN γ init) are defaults the recipes override.
_MODELS = {
    # ReCU's CIFAR ResNet-18: standard blocks, parameter-free downsample, stem without act.
    "resnet18_cifar": (resnet.ResNet, dict(**_CIFAR_R18, shortcut="avgpool_pad")),
    # Bi-Real per-conv shortcut, 3 stages × 3 blocks × 2 binary units.
    "resnet20_cifar": (
        resnet.ResNet,
        dict(
            stage_sizes=(6, 6, 6),
            stage_features=(16, 32, 64),
            block="bireal",
            stem_act="hardtanh",
            shortcut="avgpool_pad",
        ),
    ),
    "vgg_small": (vgg.VGGSmall, {}),
    # He et al.'s ResNet-18 (standard blocks, ImageNet stem): XNOR-Net's baseline architecture.
    "resnet18": (
        resnet.ResNet,
        dict(
            stage_sizes=(2, 2, 2, 2),
            stage_features=(64, 128, 256, 512),
            imagenet=True,
            act="relu",
            stem_act="relu",
            shortcut="fp_conv",
            head_bn=False,
        ),
    ),
    # Bi-Real ResNet-18/34: 4 stages of binary units, float 1×1 downsample.
    "resnet18_imagenet": (
        resnet.ResNet,
        dict(**_IMAGENET, stage_sizes=(4, 4, 4, 4), stem_act="hardtanh", shortcut="fp_conv"),
    ),
    "resnet34_imagenet": (
        resnet.ResNet,
        dict(**_IMAGENET, stage_sizes=(6, 8, 12, 6), stem_act="hardtanh", shortcut="fp_conv"),
    ),
    # ReActNet on Bi-Real-18: RSign before each binary conv, RPReLU after the add,
    # AvgPool + float 1×1 downsample, no BN before the classifier.
    "reactnet18": (
        resnet.ResNet,
        dict(
            **_IMAGENET,
            stage_sizes=(4, 4, 4, 4),
            act="rprelu",
            rsign=True,
            shortcut="avgpool_fp_conv",
            head_bn=False,
        ),
    ),
    # AdderNet's CIFAR ResNet-20: standard blocks, 1×1 downsample of the block's kind (adder),
    # ReLU, a bias-free classifier followed by BatchNorm on the logits.
    "resnet20": (
        resnet.ResNet,
        dict(
            stage_sizes=(3, 3, 3),
            stage_features=(16, 32, 64),
            act="relu",
            stem_act="relu",
            shortcut="block_conv",
            head_bn=False,
            logits_bn=True,
            fc_bias=False,
        ),
    ),
    # He et al.'s ResNet-50 (bottlenecks); AdderNet's ImageNet model with quant=adder.
    "resnet50": (
        resnet.ResNet,
        dict(
            stage_sizes=(3, 4, 6, 3),
            stage_features=(64, 128, 256, 512),
            block="bottleneck",
            imagenet=True,
            act="relu",
            stem_act="relu",
            shortcut="block_conv",
            head_bn=False,
        ),
    ),
    # larq zoo's QuickNet family (LCE's deployment models): float stem and transitions, binary
    # 3×3 blocks conv → ReLU → BN, +1 padding (the recipe's quant.pad_value).
    **{name: (quicknet.QuickNet, dict(v)) for name, v in quicknet.VARIANTS.items()},
    # Two stages of one Bi-Real unit each: for tests and smoke runs.
    "resnet_tiny": (
        resnet.ResNet,
        dict(stage_sizes=(1, 1), stage_features=(16, 32), block="bireal", stem_act="hardtanh"),
    ),
}


# Transformers: plain Flax modules; a non-float QuantSpec makes their projections BitLinear by
# rules (bnnlab.quantize_model), the modules in the last entry staying float.
_TRANSFORMERS = {
    # The :runlocal byte-level LM (pydoc_data) and ViT (digits, 2x2 patches of 8x8 images).
    "byte_lm": (transformer.ByteLM, dict(width=128, depth=2, heads=4, max_len=128), ("head",)),
    "vit_digits": (
        transformer.ViT,
        dict(patch=2, width=64, depth=4, heads=4, mlp_ratio=2),
        ("embed", "head"),
    ),
    # DeiT-S/16 (22M), the backbone of the binary-ViT papers (BiViT, BinaryViT) on ImageNet.
    "vit_s16": (
        transformer.ViT,
        dict(patch=16, width=384, depth=12, heads=6, mlp_ratio=4),
        ("embed", "head"),
    ),
    # BitNet b1.58's smallest reported model shape (700M: 1536 wide, 24 layers, 16 heads), over
    # bytes.
    "byte_lm_700m": (
        transformer.ByteLM,
        dict(width=1536, depth=24, heads=16, mlp_ratio=4, max_len=2048),
        ("head",),
    ),
}
TRANSFORMERS = tuple(_TRANSFORMERS)


def _factory(constructor, defaults, **kwargs):
    return constructor(**{**defaults, **kwargs})


def _transformer(constructor, defaults, keep_float, num_classes=None, quant=FLOAT, **kwargs):
    if num_classes is not None:  # an LM's classes are its vocabulary
        classes = "vocab_size" if constructor is transformer.ByteLM else "num_classes"
        kwargs[classes] = num_classes
    model = constructor(**{**defaults, **kwargs})
    if quant.is_float:
        return model
    if quant.adder or quant.scale is not None or quant.pad_value:
        raise ValueError(
            "Transformers are quantized by rules: quant.kernel, quant.inputs and "
            f"quant.input_norm only (got adder={quant.adder}, scale={quant.scale}, "
            f"pad_value={quant.pad_value})."
        )
    from bnnlab import intercept

    rules = transformer.bitnet_rules(quant.kernel, quant.inputs, quant.input_norm, keep_float)
    return intercept.QuantizedModel(model, rules)


for _name, (_constructor, _defaults) in _MODELS.items():
    REGISTRY.register(_name)(functools.partial(_factory, _constructor, _defaults))
for _name, (_constructor, _defaults, _keep) in _TRANSFORMERS.items():
    REGISTRY.register(_name)(functools.partial(_transformer, _constructor, _defaults, _keep))


def get(name: str, **kwargs):
    """Builds a registered model; unknown names raise ValueError listing the available ones."""
    return REGISTRY.get(name, **kwargs)


def from_ref(ref: dict):
    """A model from its JSON-able description ``{name, num_classes, quant: {kernel, inputs,
    scale, pad_value, adder}, kwargs}``: what a training config names and an export manifest
    stores. JSON lists become tuples (Linen attributes must be hashable)."""

    def tuples(v):
        return tuple(tuples(e) for e in v) if isinstance(v, list) else v

    kwargs = {k: tuples(v) for k, v in ref.get("kwargs", {}).items()}
    spec = QuantSpec(**ref.get("quant", {}))
    return get(ref["name"], num_classes=ref["num_classes"], quant=spec, **kwargs)


def available() -> list[str]:
    return REGISTRY.available()


def architecture_fields(name: str) -> set[str]:
    """The architecture options ``config.model`` may set for zoo model ``name`` (the fields of
    its constructor; ``num_classes``, ``quant`` and ``dtype`` come from elsewhere)."""
    constructor = _TRANSFORMERS[name][0] if name in _TRANSFORMERS else _MODELS[name][0]
    fields = {f.name for f in dataclasses.fields(constructor)}
    return fields - {"parent", "name", "num_classes", "quant", "vocab_size"}


def has_imagenet_stem(name: str, **overrides) -> bool:
    """Whether zoo model ``name`` (with architecture ``overrides``) starts with the ImageNet
    stem (7×7/2 conv and max-pool), which needs inputs of at least 32×32; False for names
    outside the zoo."""
    _, defaults = _MODELS.get(name, (None, {}))
    return bool({**defaults, **overrides}.get("imagenet", False))


__all__ = [
    "FLOAT",
    "TRANSFORMERS",
    "QuantSpec",
    "architecture_fields",
    "available",
    "blocks",
    "from_ref",
    "get",
    "has_imagenet_stem",
]

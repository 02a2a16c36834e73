"""A vision transformer with ternary (BitNet b1.58) or binary weights: the same unmodified Flax
ViT, its projections made BitLinear by ``bnnlab.quantize_model`` rules.

``bnnlab.models.transformer.ViT``: patch embedding by a strided conv, pre-norm blocks
(LayerNorm, multi-head attention, GELU MLP), mean-pooled tokens, linear head. The rules make
the attention and MLP projections BitLinear (absmean ternary or centred binary weights,
per-token 8-bit absmax inputs behind a parameter-free RMS sub-layer norm); the patch embedding
and the head stay float, as in BiViT and BinaryViT (docs/transformers.md).

Command (ImageNet, DeiT-S/16 backbone):
  python -m bnnlab.main --config=experiments/bitnet_vit.py --workdir=workdirs/vit
Variants: ``weights=ternary|binary|float`` and ``runlocal`` (digits: 8×8 images in 2×2
patches, 4 blocks of width 64), e.g. ``runlocal,weights=binary``.
ImageNet settings: DeiT-S's (Touvron et al., arXiv 2012.12877), on which the binary-ViT papers
build: AdamW at 5e-4 × batch / 512 with batch 1024, weight decay 0.05, 5 warm-up epochs, cosine
over 300 epochs, label smoothing 0.1 (DeiT's RandAugment, mixup and repeated augmentation are
not in bnnlab's pipeline). BiViT and BinaryViT distil from a float DeiT: set
``teacher_workdir``.

Expected: BiViT reports 70.8 % top-1 for binary weights with 1-bit softmax-aware attention
on DeiT-S (float DeiT-S 79.8 %); :runlocal numbers are in the README's table.
"""

from bnnlab import config_lib

VARIANTS = (
    "",
    "weights=binary",
    "runlocal",
    "runlocal,weights=binary",
    "runlocal,weights=float",
)
WEIGHTS = {"ternary": "ternary_absmean", "binary": "binary_absmean", "float": None}


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, runlocal=False, weights="ternary")
    if arg.weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {tuple(WEIGHTS)}, got {arg.weights!r}.")
    c = config_lib.base()
    c.model_name = "vit_s16"
    if WEIGHTS[arg.weights] is not None:
        c.quant.kernel = WEIGHTS[arg.weights]
        c.quant.inputs = "token_absmax"
        c.quant.input_norm = "rms"
    config_lib.imagenet(c, epochs=300, batch_size=1024)
    c.optimizer = "adamw"
    c.lr = 5e-4 * c.batch_size / 512
    c.weight_decay = 0.05
    c.schedule = "cosine"
    c.warmup_epochs = 5
    c.label_smoothing = 0.1
    c.diagnostics_every_steps = 0  # weight diagnostics follow QuantConv/QuantDense layers
    # No decay on biases, norm gains and positions (as BitNet's and DeiT's training code).
    c.weight_decay_rules = ((r".*/(bias|scale)|positions", 0.0),)
    if arg.runlocal:
        config_lib.runlocal(c, epochs=60)
        c.model_name = "vit_digits"
        c.lr = 2e-3
        c.weight_decay = 0.05
        c.label_smoothing = 0.0
        c.warmup_epochs = 2
        c.diagnostics_every_steps = 0
    return c

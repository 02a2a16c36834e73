"""AdderNet: multiplication-free convolutions by L1 distance (Chen et al., CVPR 2020,
arXiv 1912.13200), following huawei-noah/AdderNet.

Every 3×3 conv and the 1×1 downsample of the CIFAR ResNet-20 compute Y = −Σ|X − F| (padded taps
count |F|), with the full-precision filter gradient X − F, the HardTanh-clipped input gradient
and the adaptive per-layer gradient scaling η·√k/‖g‖ (η = 0.2); the first conv and the
classifier stay multiplicative, BatchNorm follows every adder layer and the logits. The
training loop is the released one: epochs t = 1 … 399 at lr(t) = 0.05·(1 + cos(πt/400)) (lr
0.1 is never used), weight decay 5e-4 on every parameter, CIFAR normalised with the std
(0.2023, 0.1994, 0.2010) of the released script, PyTorch's BatchNorm running variance. See
docs/recipes.md.

Command (CIFAR-10):
  python -m bnnlab.main --config=experiments/adder_r20.py --workdir=workdirs/adder_r20
Variants: ``imagenet`` (adder ResNet-50; the ImageNet recipe is not in the reference repository
and is believed to be 150 epochs, cosine, lr 0.1, batch 256, weight decay 1e-4),
``imagenet,r18`` (adder ResNet-18), ``float`` (the same ResNet-20 with multiplications, for the
comparison), ``runlocal``.

Expected top-1: CIFAR-10 ResNet-20 91.84 (paper Table 1; the README's retrained model 92.02, the
released checkpoint 91.8; the CNN 92.25); ImageNet ResNet-18 67.0 / 87.6, ResNet-50 74.9 / 91.7.
Full runs were not measured here (no accelerator); ``:runlocal`` is in the README.
"""

from bnnlab import config_lib

EPOCHS = 25  # :runlocal: under a minute on 2 CPU cores

VARIANTS = (
    "",
    "runlocal",
    "float",
    "float,runlocal",
    "imagenet",
    "imagenet,r18",
    "imagenet,runlocal",
)


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, imagenet=False, r18=False, float=False, runlocal=False)
    c = config_lib.base()
    config_lib.torch_batch_norm(c)
    c.quant.adder = not arg.float
    c.adder_eta = 0.2
    # lr(t) = 0.05·(1 + cos(πt/400)) for epochs t = 1 … 399 (the released loop starts at 1);
    # decay on adder weights too.
    config_lib.sgd_cosine(c, epochs=399, weight_decay=5e-4, warmup_epochs=0)
    c.lr_epoch_offset = 1
    c.lr_schedule_epochs = 400
    config_lib.cifar10(c)
    c.normalization = "cifar_legacy"  # the released script's (0.2023, 0.1994, 0.2010) std
    c.model_name = "resnet20"
    if arg.imagenet:
        config_lib.sgd_cosine(c, epochs=150, weight_decay=1e-4, warmup_epochs=0)
        c.lr_epoch_offset = 0
        c.lr_schedule_epochs = -1
        config_lib.imagenet(c, batch_size=256)
        c.normalization = ""
        c.model_name = "resnet18" if arg.r18 else "resnet50"
        c.model.shortcut = "block_conv"  # the downsample convs are adders too
        c.model.logits_bn = True
    if not arg.float:
        # Adder outputs have |mean|/std of 20–60: the BatchNorm after each adder layer keeps
        # the few units that differ, which bfloat16 activations (3 digits) would round away.
        # The L1 layers compute in float32 in any case; so does the whole recipe here.
        c.compute_dtype = "float32"
    if arg.runlocal:
        config_lib.runlocal(c, epochs=EPOCHS)
    return c

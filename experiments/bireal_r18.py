"""Bi-Real Net baseline (Liu et al., ECCV 2018, arXiv 1808.00278): a shortcut around every
binary conv, magnitude-aware binary weights, ApproxSign activations.

Command (CIFAR-10, Bi-Real ResNet-18 with a CIFAR stem):
  python -m bnnlab.main --config=experiments/bireal_r18.py --workdir=workdirs/bireal_r18
Variants: ``imagenet`` (Bi-Real-18 as the PyTorch release: Adam lr 1e-3 decayed linearly to 0
over 256 epochs, batch 512, no weight decay on binary weights), ``imagenet,r34``, ``runlocal``.

Expected top-1: ImageNet Bi-Real-18 56.4 / 79.5, Bi-Real-34 62.2 / 83.9 (Bi-Real README).
CIFAR-10: no number in the papers or READMEs read. Full runs were not measured here.
"""

from bnnlab import config_lib

VARIANTS = ("", "runlocal", "imagenet", "imagenet,r34", "imagenet,runlocal")


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, imagenet=False, r34=False, runlocal=False)
    c = config_lib.base()
    config_lib.torch_batch_norm(c)
    c.quant.kernel = "magnitude_aware_sign"
    c.quant.inputs = "approx_sign"
    c.model_name = "resnet34_imagenet" if arg.r34 else "resnet18_imagenet"
    # Bi-Real: no nonlinearity besides the sign, AvgPool + float 1×1 downsample.
    c.model.act = "identity"
    c.model.stem_act = "relu"
    c.model.shortcut = "avgpool_fp_conv"
    if arg.imagenet:
        config_lib.imagenet(c, epochs=256)
    else:
        config_lib.cifar10(c, epochs=400)
        c.model.imagenet = False
    # Binary latent weights get no decay; everything else a little (the release's 5e-6).
    config_lib.adam_linear(c, weight_decay=5e-6)
    c.weight_decay_rules = ((r".*unit\d+/conv/kernel", 0.0),)
    if arg.runlocal:
        config_lib.runlocal(c, epochs=60, width=0.25)
    return c

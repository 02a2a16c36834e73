"""Full-precision baselines: the binary recipes' architectures with float weights/activations.

Command (CIFAR-10, the ResNet-18 of recu_r18.py with float convs):
  python -m bnnlab.main --config=experiments/float_r18.py --workdir=workdirs/float_r18
Variants: ``r20``, ``vgg`` (the same architectures as the binary recipes), ``imagenet``
(He et al.'s ResNet-18, 90-epoch-style SGD recipe trained for 100 epochs), ``runlocal``.

Expected top-1: ImageNet ResNet-18 69.8 / 89.1 (the CNN row of AdderNet's Table 2). CIFAR-10:
no paper number for these exact architectures (Hardtanh, parameter-free downsample). Full runs
were not measured here (no accelerator). ``:runlocal`` is measured in the README, where it is
the reference for the binary recipes' digits accuracy.
"""

from bnnlab import config_lib

# :runlocal epochs, as the binary recipes that use 60.
EPOCHS = 60

VARIANTS = (
    "",
    "runlocal",
    "r20",
    "r20,runlocal",
    "vgg",
    "vgg,runlocal",
    "imagenet",
    "imagenet,runlocal",
)


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, imagenet=False, r20=False, vgg=False, runlocal=False)
    c = config_lib.base()
    config_lib.torch_batch_norm(c)
    config_lib.sgd_cosine(c, epochs=200, weight_decay=5e-4)
    config_lib.cifar10(c)
    c.model_name = "resnet20_cifar" if arg.r20 else "vgg_small" if arg.vgg else "resnet18_cifar"
    if arg.imagenet:
        config_lib.imagenet(c, epochs=100, batch_size=256)
        c.model_name = "resnet18"
        c.warmup_epochs = 0
        c.weight_decay = 1e-4
        c.weight_decay_rules = ((".*bn.*", 0.0),)
    if arg.runlocal:
        config_lib.runlocal(
            c, epochs=EPOCHS, width=0.25 if c.model_name != "resnet20_cifar" else 1.0
        )
    return c

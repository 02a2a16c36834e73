"""XNOR-Net baseline (Rastegari et al., ECCV 2016, arXiv 1603.05279): binary weights scaled by
‖W_f‖₁/n per filter (with the paper's gradient) and sign activations with the clipped STE.

Command (CIFAR-10, the standard-block ResNet-18):
  python -m bnnlab.main --config=experiments/xnor_r18.py --workdir=workdirs/xnor_r18
Variants: ``imagenet`` (He et al.'s ResNet-18, Adam with linear decay as the Bi-Real PyTorch
release), ``runlocal``. The optional activation scaling map K of the paper is not used (most
later work drops it), and the block order is the standard conv → BN → act.

Expected top-1: ImageNet ResNet-18 51.2 / 73.2 (AdderNet Table 2, Bi-Real README). CIFAR-10:
no number for this architecture in the spec's sources. Full runs were not measured here.
"""

from bnnlab import config_lib

VARIANTS = ("", "runlocal", "imagenet", "imagenet,runlocal")


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, imagenet=False, runlocal=False)
    c = config_lib.base()
    c.quant.kernel = "xnor_sign"
    c.quant.inputs = "ste_sign"
    if arg.imagenet:
        c.dataset = "imagenet2012"
        c.model_name = "resnet18"
        c.optimizer = "adam"
        c.lr = 1e-3
        c.schedule = "linear"
        c.schedule_unit = "step"
        c.num_epochs = 256
        c.batch_size = 512
        c.eval_batch_size = 256
        c.weight_decay = 0.0
    else:
        c.dataset = "cifar10"
        c.model_name = "resnet18_cifar"
        c.num_epochs = 400
        c.warmup_epochs = 5
        c.weight_decay = 5e-4
    if arg.runlocal:
        config_lib.runlocal(c, epochs=60, width=0.25)
        if arg.imagenet:
            c.image_size = 32
    return c

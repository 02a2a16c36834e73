"""XNOR-Net baseline (Rastegari et al., ECCV 2016, arXiv 1603.05279): binary weights scaled by
‖W_f‖₁/n per filter (with the paper's gradient) and sign activations with the clipped STE.

Command (CIFAR-10, the standard-block ResNet-18):
  python -m bnnlab.main --config=experiments/xnor_r18.py --workdir=workdirs/xnor_r18
Variants: ``imagenet`` (He et al.'s ResNet-18, Adam with linear decay as the Bi-Real PyTorch
release), ``runlocal``. The optional activation scaling map K of the paper is not used (most
later work drops it), and the block order is the standard conv → BN → act.

Expected top-1: ImageNet ResNet-18 51.2 / 73.2 (AdderNet Table 2, Bi-Real README). CIFAR-10:
no number for this architecture in the papers or READMEs read. Full runs were not measured here.
"""

from bnnlab import config_lib

VARIANTS = ("", "runlocal", "imagenet", "imagenet,runlocal")


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, imagenet=False, runlocal=False)
    c = config_lib.base()
    config_lib.torch_batch_norm(c)
    c.quant.kernel = "xnor_sign"
    c.quant.inputs = "ste_sign"
    if arg.imagenet:
        config_lib.imagenet(c, epochs=256)
        config_lib.adam_linear(c)
        c.model_name = "resnet18"
    else:
        config_lib.sgd_cosine(c, epochs=400, weight_decay=5e-4)
        config_lib.cifar10(c)
        c.model_name = "resnet18_cifar"
    if arg.runlocal:
        config_lib.runlocal(c, epochs=60, width=0.25)
    return c

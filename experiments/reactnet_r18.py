"""ReActNet baseline (Liu et al., ECCV 2020, arXiv 2003.03488) on Bi-Real-18: RSign (learnable
threshold) before each binary conv, RPReLU after each shortcut add, magnitude-aware binary
weights, optional distillation from a real-valued teacher.

Command (CIFAR-10, ReActNet-18 with a CIFAR stem):
  python -m bnnlab.main --config=experiments/reactnet_r18.py --workdir=workdirs/reactnet_r18
Variants: ``imagenet`` (step 2 of the two-step recipe: Adam lr 1e-3 decayed linearly over 256
epochs, batch 512, no weight decay; pass ``--config.teacher_workdir=DIR`` of a trained float
run to add the distributional loss), ``runlocal``.
As the released train.py, the lr changes once per epoch and its LambdaLR steps at the start of
the epoch, so epoch t trains at lr·(1 − (t + 1)/T); BatchNorm keeps PyTorch's running variance.

Expected top-1: ImageNet 65.9 with the two-step recipe and a ResNet-34 teacher (ReActNet
README). Full runs were not measured here.
"""

from bnnlab import config_lib

VARIANTS = ("", "runlocal", "imagenet", "imagenet,runlocal")


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, imagenet=False, runlocal=False)
    c = config_lib.base()
    config_lib.torch_batch_norm(c)
    c.model_name = "reactnet18"
    c.quant.kernel = "magnitude_aware_sign"  # inputs: the model's RSign
    if arg.imagenet:
        config_lib.imagenet(c, epochs=256)
    else:
        config_lib.cifar10(c, epochs=400)
        c.model.imagenet = False
    config_lib.adam_linear(c)
    if arg.runlocal:
        config_lib.runlocal(c, epochs=60, width=0.25)
    return c

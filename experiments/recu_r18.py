"""ReCU: Reviving the Dead Weights in Binary Neural Networks (Xu et al., ICCV 2021,
arXiv 2103.12369).

Binary weights and activations following the authors' released code (z-hXu/ReCU): per-filter
balanced weights standardised to std 2√2, the gradient clamped at the Laplace quantile Q(τ)
with τ scheduled 0.85 → 0.99 by the exponential scheduler (set at the start of each epoch),
activations scaled per sample in training, learnable α initialised U[0, 1), weight decay on all
parameters (one group), warm-up + cosine stepped per epoch, PyTorch's BatchNorm running
variance, CIFAR normalised with ImageNet statistics — the released training step. See
docs/recipes.md.

Command (CIFAR-10, ResNet-18, standard blocks, parameter-free downsample):
  python -m bnnlab.main --config=experiments/recu_r18.py --workdir=workdirs/recu_r18
Variants (``:arg``, comma-separated): ``r20`` (ResNet-20, Bi-Real shortcuts), ``vgg``
(VGG-small), ``imagenet`` (Bi-Real ResNet-18, 200 epochs), ``imagenet,r34``, ``reactnet``
(ReActNet-like ResNet-18, Adam, distillation from ``--config.teacher_workdir``), ``runlocal``.

Expected top-1 (ReCU README, "vanilla"): CIFAR-10 ResNet-18 92.8, ResNet-20 87.5, VGG-small
92.2 (600 epochs); ImageNet ResNet-18 60.98 / 82.57, ResNet-34 65.10 / 85.78 (200 epochs);
ReActNet-like ResNet-18 with KD 66.4 (256 epochs).
Hardware and time: the full runs were not measured here (no accelerator); CIFAR-10 is 117k
steps at batch 256, ImageNet 500k steps at batch 512. ``:runlocal``: see the README's
experiments table (measured on 2 CPU cores). CIFAR/ImageNet need TFDS data prepared once.
"""

from bnnlab import config_lib

# :runlocal epochs: ReCU needs more of them than SiMaN to pass 92 % on digits.
EPOCHS = 100

VARIANTS = (
    "",
    "runlocal",
    "r20",
    "r20,runlocal",
    "vgg",
    "vgg,runlocal",
    "imagenet",
    "imagenet,runlocal",
    "imagenet,r34",
    "reactnet",
    "reactnet,runlocal",
)


def get_config(arg=None):
    arg = config_lib.parse_arg(
        arg, imagenet=False, r20=False, vgg=False, r34=False, reactnet=False, runlocal=False
    )
    c = config_lib.base()
    config_lib.torch_batch_norm(c)
    c.quant.kernel = "recu(tau_min=0.85, tau_max=0.99)"
    c.quant.inputs = "recu_act"
    c.quant.scale = "uniform"
    config_lib.sgd_cosine(c, epochs=600, weight_decay=5e-4)
    config_lib.cifar10(c)
    c.model_name = "resnet20_cifar" if arg.r20 else "vgg_small" if arg.vgg else "resnet18_cifar"
    if arg.reactnet:
        # Two-stage ImageNet recipe: Adam, no weight decay, KD to a real-valued teacher; the
        # script asks for cosine with warm-up (its last lr_type wins).
        config_lib.imagenet(c, epochs=256, rrc_scale=(0.08, 1.25))
        c.model_name = "reactnet18"
        c.quant.inputs = None  # the model's RSign binarises the inputs
        c.optimizer = "adam"
        c.lr = 1e-3
        c.weight_decay = 0.0
    elif arg.imagenet:
        config_lib.imagenet(c, epochs=200, rrc_scale=(0.08, 1.25))
        c.model_name = "resnet34_imagenet" if arg.r34 else "resnet18_imagenet"
        c.model.bn_gamma_init = 1e-8
        # Decay only parameters named conv/fc (binary latents, α, stem, classifier), not BN
        # and not the float downsample conv, as the reference selects them by name.
        c.weight_decay = 1e-4
        c.weight_decay_rules = ((".*shortcut.*", 0.0), (".*(conv|fc).*", 1e-4), (".*", 0.0))
    if arg.runlocal:
        config_lib.runlocal(
            c, epochs=EPOCHS, width=0.25 if c.model_name != "resnet20_cifar" else 1.0
        )
    return c

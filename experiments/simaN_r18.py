"""SiMaN: Sign-to-Magnitude Network binarization (Lin et al., IEEE TPAMI 2023, arXiv 2102.07981).

Binary weights (magnitudes above the filter's median → +1) and activations, as the authors'
released training step (lmbxmu/SiMaN): per-sample standardised activations, learnable
per-channel α initialised to mean|W|, latent weights clipped at the p(t) = 15(1 − t/T)
percentile, the {0, 1} code's median tie rule, PyTorch's BatchNorm running variance, and the
released weight-decay groups: the code selects "no decay" by parameter name ('layer…conv…'), so
the binary 3×3 convs and their α get none while the binarised 1×1 shortcut convs of the CIFAR
ResNet-18 (named 'shortcut.0') and their α get 5e-4 like everything else.
Deliberate deviation: the released forward also re-clips the latent weights on every *eval*
batch (an in-place write without a training guard); bnnlab clips only in the training step,
which leaves eval outputs unchanged (the code B is frozen in eval). See docs/recipes.md.

Command (CIFAR-10, ResNet-18 with a binarised 1×1 downsample):
  python -m bnnlab.main --config=experiments/simaN_r18.py --workdir=workdirs/simaN_r18
Variants (``:arg``, comma-separated): ``r20`` (ResNet-20, Bi-Real shortcuts, option-A
downsample, PReLU), ``vgg`` (VGG-small, PReLU), ``imagenet`` (Bi-Real ResNet-18, 150 epochs),
``imagenet,r34`` (ResNet-34), ``paper_decay`` (the paper's rule taken literally: no ℓ2 on any
binary layer, the 1×1 shortcut included), ``exact_half`` (exactly ⌊n/2⌋ ones per filter, ties
broken by position, instead of the median rule), ``runlocal`` (embedded digits, any laptop).

Expected top-1 (SiMaN README): CIFAR-10 ResNet-18 92.5, ResNet-20 87.4, VGG-small 92.5
(400 epochs); ImageNet ResNet-18 60.1 / 82.3, ResNet-34 63.9 / 84.8 (150 epochs, DALI loader).
Hardware and time: the full runs were not measured here (no accelerator); CIFAR-10 is 78k steps
at batch 256, ImageNet 375k steps at batch 512. ``:runlocal`` (ResNet-18 at width 0.25 on
digits): see the README's experiments table for the measured accuracy and time on 2 CPU cores.
CIFAR/ImageNet need TFDS data prepared once (see the README).
"""

from bnnlab import config_lib

# :runlocal epochs: 94–96 % digits accuracy in about 2 minutes on 2 CPU cores.
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
    "imagenet,r34",
    "imagenet,r34,runlocal",
    "paper_decay",
    "paper_decay,runlocal",
    "exact_half",
    "exact_half,runlocal",
)


def get_config(arg=None):
    arg = config_lib.parse_arg(
        arg,
        imagenet=False,
        r20=False,
        vgg=False,
        r34=False,
        paper_decay=False,
        exact_half=False,
        runlocal=False,
    )
    c = config_lib.base()
    c.seed = 123
    config_lib.torch_batch_norm(c)
    c.quant.kernel = "siman(ties='exact_half')" if arg.exact_half else "siman"
    c.quant.inputs = "siman_act"
    c.quant.scale = "mean_abs"
    if arg.imagenet:
        # The published ImageNet command: cosine without warm-up, RRC scale up to 1.25.
        config_lib.sgd_cosine(c, epochs=150, weight_decay=1e-4, warmup_epochs=0)
        config_lib.imagenet(c, rrc_scale=(0.08, 1.25))
        c.model_name = "resnet34_imagenet" if arg.r34 else "resnet18_imagenet"
        c.model.act = "prelu"
        c.model.stem_act = "relu"
        c.model.bn_gamma_init = 1e-8
    else:
        config_lib.sgd_cosine(c, epochs=400, weight_decay=5e-4)
        config_lib.cifar10(c)
        if arg.r20:
            c.model_name = "resnet20_cifar"
            c.model.act = "prelu"
            c.model.stem_act = "relu"
            c.model.shortcut = "subsample_pad"
        elif arg.vgg:
            c.model_name = "vgg_small"
            c.model.act = "prelu"
        else:
            c.model_name = "resnet18_cifar"
            c.model.shortcut = "block_conv"
            if not arg.paper_decay:
                # SiMaN layers opt out of decay; the released name-based groups decay the
                # binary 1×1 shortcut conv and its α anyway.
                c.weight_decay_rules = ((r".*/shortcut/conv/(kernel|scale)", 5e-4),)
    if arg.runlocal:
        config_lib.runlocal(
            c, epochs=EPOCHS, width=0.25 if c.model_name != "resnet20_cifar" else 1.0
        )
    return c

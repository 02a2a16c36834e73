"""QuickNet (Bannink et al., "Larq Compute Engine: Design, Benchmark, and Deploy
State-of-the-Art Binarized Neural Networks", MLSys 2021, arXiv 2011.09398), larq zoo's
architecture for deployment with LCE: float stem and transitions, binary 3×3 blocks with sign
inputs and weights (straight-through window 1.25, latent weights clipped to ±1.25), +1
padding, conv → ReLU → BatchNorm.

Command (ImageNet, QuickNet):
  python -m bnnlab.main --config=experiments/quicknet.py --workdir=workdirs/quicknet
Variants: ``small`` / ``large`` (QuickNet-Small, QuickNet-Large), ``runlocal`` (digits,
upsampled to 32×32, width 0.25), ``small,runlocal``.
larq zoo's training (``larq_zoo/training/sota_experiments.py``): 600 epochs at batch 2048,
larq's CaseOptimizer — Adam at 1e-2 on the binary latent weights, SGD with momentum 0.9 at
0.1 on everything else — both with 5 warm-up epochs then cosine decay to 0; no weight decay,
no distillation, one stage; Inception-style crops, bicubic resize, ImageNet mean/std.

Expected top-1 (larq zoo): QuickNet-Small 59.4 %, QuickNet 63.3 %, QuickNet-Large 66.9 %;
Pixel 1 single-thread latency 16.8 / 25.5 / 44.2 ms in LCE (LCE README). Full runs were not
measured here. Deploy: ``python -m bnnlab.export --workdir=W --format=tflite``.
"""

from bnnlab import config_lib

VARIANTS = ("", "small", "large", "runlocal", "small,runlocal")


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, small=False, large=False, runlocal=False)
    if arg.small and arg.large:
        raise ValueError("QuickNet: choose one of small and large.")
    c = config_lib.base()
    c.model_name = "quicknet_small" if arg.small else "quicknet_large" if arg.large else "quicknet"
    c.quant.kernel = "ste_sign(clip_value=1.25, latent_clip=1.25)"
    c.quant.inputs = "ste_sign(clip_value=1.25)"
    c.quant.pad_value = 1.0
    config_lib.imagenet(c, epochs=600, batch_size=2048)
    config_lib.sgd_cosine(c, epochs=600, weight_decay=0.0, warmup_epochs=5)
    c.optimizer = "case"
    c.binary_lr_scale = 0.1  # Adam 1e-2 against SGD's 0.1
    c.schedule_unit = "step"  # larq zoo's schedule is per step
    if arg.runlocal:
        config_lib.runlocal(c, epochs=40, width=0.25)
        c.image_size = 32  # the stem and three transitions divide by 32
    return c

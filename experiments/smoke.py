"""Smoke test: a seconds-long run of a tiny binary ResNet on the embedded digits data.

Command:
  python -m bnnlab.main --config=experiments/smoke.py --workdir=/tmp/smoke
Used by the tests (training, resume, SIGKILL) and to check an installation or launch.sh.
Accuracy is not the point (16 steps); expect well above chance but far from the recipes.
"""

from bnnlab import config_lib

VARIANTS = ("", "runlocal", "float")


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, runlocal=False, float=False)
    c = config_lib.base()
    config_lib.runlocal(c)
    c.model_name = "resnet_tiny"
    if not arg.float:
        c.quant.kernel = "siman"
        c.quant.inputs = "siman_act"
        c.quant.scale = "mean_abs"
    c.batch_size = 32
    c.eval_batch_size = 120
    c.total_steps = 16
    c.schedule_unit = "step"
    c.warmup_epochs = 0
    c.log_every_steps = 4
    c.checkpoint_every_steps = 8
    c.diagnostics_every_steps = 4
    c.progress_bar = False
    c.mesh = (("data", 1),)  # tiny steps run faster on one device than split over several
    return c

"""Reconfigurable BNN (Qiu et al., "RBNN: Memory-Efficient Reconfigurable Deep Binary Neural
Network With IP Protection for Internet of Things", IEEE TCAD 2023, arXiv 2105.03822).

One set of binary latent weights serves every task: each layer reads the shared flat latent
vector through a permutation derived from the user key and the device root key
(HMAC-SHA256 → per-task seed → per-layer permutation), BatchNorm is per task, the head is
shared and sliced per task, and every per-channel row is stored masked under the keys.
Training is round robin, one Adam step per task batch.

Command (the keys are run-time inputs, never in the config; the run records their check value
and refuses other keys on resume):
  python -m bnnlab.reconfig.keys DEVICE_KEY   # a fresh 256-bit key, mode 0600
  python -m bnnlab.main --config=experiments/rbnn_reactnet.py --workdir=workdirs/rbnn \\
      --user_key_file=USER_KEY --device_key_file=DEVICE_KEY
  python -m bnnlab.reconfig --workdir=workdirs/rbnn --user_key_file=... --device_key_file=...
Variants: ``runlocal`` (three offline tasks from the embedded digits: the digits, the digits
under a fixed pixel permutation, the digits with a fixed label permutation; public demo keys),
``runlocal,single=I`` (the same architecture trained on task I alone, the baseline the paper
compares with).

Expected: the paper reports no or "negligible (within 1 %)" accuracy loss against single-task
models for up to 7 tasks on VGG, ResNet and ReActNet; its per-task tables were not retrievable
(docs/reconfigurable.md). The task set here follows the datasets the released code supports
(cifar10, fashion_mnist, svhn_cropped, mnist), resized to 32×32×3 as that code does, with its
schedule (Adam, lr 5e-3 → 1e-5 in steps, 200 epochs, batch 256, no weight decay). Full runs
were not measured here; ``:runlocal`` is measured in the README.
"""

from bnnlab import config_lib

EPOCHS = 60  # :runlocal (about 2 minutes on 2 CPU cores for the three tasks)
VARIANTS = ("", "runlocal", "runlocal,single=0", "runlocal,single=1", "runlocal,single=2")

TASKS = ("cifar10", "fashion_mnist", "svhn_cropped", "mnist")
LOCAL_TASKS = ("digits", "digits:pixels", "digits:labels")


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, runlocal=False, single=-1)
    c = config_lib.base()
    c.trainer = "reconfig"
    c.reconfig.tasks = TASKS
    c.model_name = "rbnn_reactnet"
    c.optimizer = "adam"
    c.lr = 5e-3
    c.schedule = "piecewise"
    c.lr_boundaries = (40, 80, 100, 120, 140)
    c.lr_values = (5e-3, 1e-3, 5e-4, 1e-4, 5e-5, 1e-5)
    c.weight_decay = 0.0
    c.num_epochs = 200
    c.batch_size = 256
    c.eval_batch_size = 256
    c.image_size = 32
    c.crop_padding = 4
    if arg.runlocal:
        config_lib.runlocal(c, epochs=EPOCHS, width=0.5)
        c.reconfig.tasks = LOCAL_TASKS
        c.reconfig.demo_keys = True
        c.schedule = "cosine"
        c.lr = 5e-3
        c.warmup_epochs = 0
        c.diagnostics_every_steps = 0
    if arg.single >= 0:
        c.reconfig.tasks = (c.reconfig.tasks[arg.single],)
    return c

"""Shared config pieces: the base config every recipe starts from, ``file.py:arg`` parsing,
the ``:runlocal`` budget, and validation that names unknown keys before any compute.

Recipes live in ``experiments/`` and are loaded by path, so everything they share is here,
imported from the installed package (big_vision's ``configs/common.py`` pattern).
"""

from __future__ import annotations

import difflib

import ml_collections as mlc
from ml_collections import config_dict

from bnnlab import config_ranges

OPTIMIZERS = ("sgd", "adam", "adamw", "case")
TRAINERS = ("supervised", "reconfig")
SCHEDULES = ("cosine", "linear", "constant", "piecewise")
SCHEDULE_UNITS = ("epoch", "step")
# Mixed precision: "bfloat16" computes activations and conv/matmul operands in bf16; params,
# optimizer state, BatchNorm statistics, the loss and every quantizer decision stay float32.
COMPUTE_DTYPES = ("float32", "bfloat16")


def base() -> mlc.ConfigDict:
    """Every key a recipe may set, with defaults. Unknown keys are rejected by ``validate``."""
    c = mlc.ConfigDict()
    c.seed = 0

    # Data.
    c.dataset = "cifar10"
    c.data_dir = config_dict.placeholder(str)  # TFDS data_dir with prepared array_record data
    c.augment = ""  # "" = the dataset's default (data.DATASETS)
    c.normalization = ""  # "" = the dataset's default
    c.crop_padding = 4
    c.rrc_scale = (0.08, 1.0)  # RandomResizedCrop area range (ImageNet augmentation)
    c.image_size = config_dict.placeholder(int)  # upsample/crop inputs to this size
    c.batch_size = 256  # global, over all devices and hosts
    # Processes that decode and augment training batches (grain): -1 = one per CPU core but
    # one for datasets of encoded images (ImageNet), 0 for in-memory ones (CIFAR, digits);
    # 0 = threads of the training process.
    c.data_workers = -1
    c.eval_batch_size = 128

    # Model: models.get(model_name, quant=..., **model).
    c.model_name = "resnet18_cifar"
    c.model = mlc.ConfigDict()  # architecture overrides: width, act, shortcut, bn_gamma_init…
    c.quant = mlc.ConfigDict()
    c.quant.kernel = config_dict.placeholder(str)  # quantizer name/call string; None = float
    c.quant.inputs = config_dict.placeholder(str)
    c.quant.scale = config_dict.placeholder(str)  # "uniform" (ReCU), "mean_abs" (SiMaN)
    c.quant.pad_value = 0.0
    c.quant.adder = False  # AdderNet L1 layers instead of the inner convolutions
    # Transformers: the parameter-free norm before each quantized projection ("rms", "layer").
    c.quant.input_norm = config_dict.placeholder(str)
    c.compute_dtype = "float32"  # COMPUTE_DTYPES; the recipes' accelerator variants use bf16

    # Optimisation.
    c.num_epochs = 400
    c.total_steps = -1  # > 0 overrides num_epochs × steps per epoch (smoke runs)
    # OPTIMIZERS; "case": Adam on binary latent kernels, SGD elsewhere; "adamw": decoupled decay
    c.optimizer = "sgd"
    c.lr = 0.1
    # optimizer="case" (larq's CaseOptimizer, QuickNet's recipe): the binary latent kernels'
    # Adam runs at lr × binary_lr_scale on the same schedule (1e-2 against SGD's 0.1).
    c.binary_lr_scale = 0.1
    c.momentum = 0.9
    c.nesterov = False
    c.b1 = 0.9
    c.b2 = 0.999
    c.schedule = "cosine"  # SCHEDULES
    c.schedule_unit = "epoch"  # lr and quantizer schedules change per epoch (as the papers)
    c.warmup_epochs = 0
    # The lr schedule is evaluated at epoch t + lr_epoch_offset of a schedule lr_schedule_epochs
    # long (-1: num_epochs), to match released loops that step their scheduler before an epoch
    # (ReActNet, Bi-Real: epoch t trains at lr(t + 1)) or start counting at 1 (AdderNet).
    c.lr_epoch_offset = 0
    c.lr_schedule_epochs = -1
    c.lr_boundaries = ()  # piecewise: epochs where the lr changes
    c.lr_values = ()  # piecewise: lr before the first boundary, then after each
    c.weight_decay = 5e-4
    # (regex over '/'-joined param paths, decay) pairs, first match wins; parameters no rule
    # matches get 0 if their layer's quantizer opts out of decay (SiMaN), else weight_decay.
    c.weight_decay_rules = ()
    c.grad_clip_norm = config_dict.placeholder(float)
    c.label_smoothing = 0.0
    c.adder_eta = 0.2  # AdderNet's adaptive gradient scaling η·√k/‖g‖ (0 = off)
    # Fine-tuning: start from a trained workdir's params and BatchNorm statistics (not a
    # resume: step, optimizer and schedule start fresh), and freeze the parameters whose
    # '/'-joined path fully matches this regex.
    c.init_from = config_dict.placeholder(str)
    c.freeze = ""
    c.teacher_workdir = config_dict.placeholder(str)  # distil from a trained bnnlab workdir
    c.distill_weight = 1.0  # loss = w·KD + (1 − w)·CE when a teacher is set

    # Trainer: "supervised" (bnnlab.train) or "reconfig" (round-robin multi-task training of a
    # reconfigurable BNN, bnnlab.reconfig; its keys are run-time inputs, never config).
    c.trainer = "supervised"
    c.reconfig = mlc.ConfigDict()
    c.reconfig.tasks = ()  # "dataset[:transform]" per task; ids are task0, task1, …
    c.reconfig.demo_keys = False  # public demo keys when none are given (for :runlocal only)

    # Devices.
    c.mesh = (("data", -1),)  # named axes; -1 = the remaining devices
    c.distributed = False  # call jax.distributed.initialize() (multi-host pod slices)

    # Logging, evaluation, checkpoints.
    c.log_every_steps = 50
    c.eval_every_epochs = 10
    c.checkpoint_every_steps = 1000  # a multiple of log_every_steps
    c.keep_checkpoints = 3
    # Resuming with a config that differs from the workdir's config.json (other than in how
    # the run is executed or logged) is refused; True continues with the change, recorded in
    # config_changes.jsonl (bnnlab.runs.identity).
    c.resume_override = False
    c.progress_bar = True  # tqdm on an interactive terminal, log lines otherwise
    # Weight diagnostics (bit entropy, flip ratio, dead weights, quantization error, activation
    # sign balance) logged as "diagnostics" records every N steps; 0 turns them off, including
    # the per-step flip tracking.
    c.diagnostics_every_steps = 100
    return c


def parse_arg(arg: str | None, **defaults) -> mlc.ConfigDict:
    """Parses ``"runlocal,variant=r20"`` into typed options (big_vision's ``parse_arg``).

    A bare name sets a bool option to True; ``key=value`` is cast to the default's type.
    Unknown options raise ValueError listing the known ones.
    """
    out = mlc.ConfigDict(defaults)
    if not arg:
        return out
    for item in arg.split(","):
        key, eq, value = (s.strip() for s in item.partition("="))
        if key not in defaults:
            raise ValueError(
                f"Unknown config argument {key!r} in {arg!r}. Known: {', '.join(defaults)}."
            )
        default = defaults[key]
        if not eq:
            if not isinstance(default, bool):
                raise ValueError(f"Config argument {key!r} needs a value: {key}=...")
            out[key] = True
        elif isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"Config argument {key!r} is a bool, got {value!r}.")
            out[key] = value.lower() in ("true", "1")
        else:
            out[key] = type(default)(value)
    return out


def sgd_cosine(c: mlc.ConfigDict, *, epochs: int, weight_decay: float, warmup_epochs: int = 5):
    """The optimizer ReCU and SiMaN share: SGD(0.9) at lr 0.1, warm-up + cosine."""
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.lr = 0.1
    c.schedule = "cosine"
    c.warmup_epochs = warmup_epochs
    c.num_epochs = epochs
    c.weight_decay = weight_decay


def cifar10(c: mlc.ConfigDict, *, epochs: int | None = None) -> None:
    """CIFAR-10 at the papers' batch sizes (256 / test 128), in bf16 (an accelerator run)."""
    c.dataset = "cifar10"
    c.compute_dtype = "bfloat16"
    c.batch_size = 256
    c.eval_batch_size = 128
    if epochs is not None:
        c.num_epochs = epochs


def imagenet(
    c: mlc.ConfigDict, *, epochs: int | None = None, batch_size: int = 512, rrc_scale=(0.08, 1.0)
) -> None:
    """ImageNet data at the papers' batch sizes (test batch = half the training batch), in
    bf16 (an accelerator run)."""
    c.dataset = "imagenet2012"
    c.compute_dtype = "bfloat16"
    if epochs is not None:
        c.num_epochs = epochs
    c.batch_size = batch_size
    c.eval_batch_size = batch_size // 2
    c.rrc_scale = rrc_scale


def adam_linear(c: mlc.ConfigDict, *, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
    """Bi-Real/ReActNet's optimizer as released: Adam with LambdaLR(1 − e/T) stepped at the
    *start* of each epoch, so epoch t trains at lr·(1 − (t + 1)/T) (the last one at 0)."""
    c.optimizer = "adam"
    c.lr = lr
    c.schedule = "linear"
    c.schedule_unit = "epoch"
    c.lr_epoch_offset = 1
    c.warmup_epochs = 0
    c.weight_decay = weight_decay


def torch_batch_norm(c: mlc.ConfigDict) -> None:
    """BatchNorm as ``torch.nn.BatchNorm2d`` (the released code of every recipe here): the
    running variance is updated with the unbiased batch variance (momentum 0.1 ≙ Flax 0.9)."""
    c.model.bn_running_var = "unbiased"


def runlocal(c: mlc.ConfigDict, *, epochs: int = 30, width: float | None = None) -> None:
    """The laptop budget: embedded digits data, small batches, frequent logs. Models with an
    ImageNet stem see the 8×8 digits upsampled to 32×32."""
    c.dataset = "digits"
    c.augment = ""
    c.normalization = ""
    c.crop_padding = 1  # 8×8 images: shift by at most one pixel
    c.image_size = None
    c.batch_size = 64
    c.eval_batch_size = 120
    if c.lr_schedule_epochs > 0:  # keep a released schedule's offset from the epoch count
        c.lr_schedule_epochs = epochs + (c.lr_schedule_epochs - c.num_epochs)
    c.num_epochs = epochs
    c.total_steps = -1
    c.warmup_epochs = min(c.warmup_epochs, 2)
    c.log_every_steps = 10
    c.eval_every_epochs = 5
    c.checkpoint_every_steps = 200
    c.diagnostics_every_steps = 50
    c.teacher_workdir = None
    c.compute_dtype = "float32"  # bf16 convolutions are emulated (slow) on CPUs
    c.data_workers = 0  # 8×8 digits: worker processes would cost more than they save
    if width is not None:
        c.model.width = width
    from bnnlab import models  # on use: config_lib itself imports no JAX

    if models.has_imagenet_stem(c.model_name, **c.model.to_dict()):
        c.image_size = 32


def _unknown(c: mlc.ConfigDict, ref: mlc.ConfigDict, prefix: str = "") -> list[str]:
    bad = []
    for key in c:
        name = prefix + key
        if key not in ref:
            hint = difflib.get_close_matches(key, list(ref), n=1)
            bad.append(name + (f" (did you mean {prefix + hint[0]!r}?)" if hint else ""))
        elif key != "model" and isinstance(c[key], mlc.ConfigDict):
            bad.extend(_unknown(c[key], ref[key], name + "."))
    return bad


def _check_choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"config.{field} = {value!r} is not one of {allowed}.")


def validate(c: mlc.ConfigDict) -> None:
    """Raises ValueError naming unknown keys or impossible values (before any compute).

    ``config.model`` is free-form (architecture overrides); the model constructor checks it.
    """
    bad = _unknown(c, base())
    if bad:
        raise ValueError(f"Unknown config key(s): {', '.join(bad)}.")
    _check_choice("optimizer", c.optimizer, OPTIMIZERS)
    _check_choice("compute_dtype", c.compute_dtype, COMPUTE_DTYPES)
    if c.trainer == "reconfig" and c.compute_dtype != "float32":
        raise ValueError(
            f"config.compute_dtype = {c.compute_dtype!r}: the reconfigurable trainer computes in "
            "float32 only; use compute_dtype='float32'."
        )
    _check_choice("trainer", c.trainer, TRAINERS)
    if c.trainer == "reconfig" and not c.reconfig.tasks:
        raise ValueError("config.trainer = 'reconfig' needs config.reconfig.tasks.")
    _check_choice("schedule", c.schedule, SCHEDULES)
    _check_choice("schedule_unit", c.schedule_unit, SCHEDULE_UNITS)
    config_ranges.check_ranges(c)
    _check_choice("quant.pad_value", c.quant.pad_value, (0.0, 1.0))
    _check_model_keys(c)
    if c.checkpoint_every_steps % c.log_every_steps:
        raise ValueError(
            f"config.checkpoint_every_steps ({c.checkpoint_every_steps}) must be a multiple of "
            f"config.log_every_steps ({c.log_every_steps}), so a resumed run logs the same "
            "metrics as an uninterrupted one."
        )
    if c.schedule == "piecewise" and len(c.lr_values) != len(c.lr_boundaries) + 1:
        raise ValueError(
            "config.lr_values needs one more entry than config.lr_boundaries for the piecewise "
            f"schedule, got {len(c.lr_values)} and {len(c.lr_boundaries)}."
        )
    for axis, size in c.mesh:
        if axis not in ("data", "fsdp", "model"):
            raise ValueError(f"Unknown mesh axis {axis!r}; use 'data', 'fsdp' or 'model'.")
        if not (size == -1 or size >= 1):
            raise ValueError(f"Mesh axis {axis!r} has size {size}; use -1 or a positive size.")


def _check_model_keys(c: mlc.ConfigDict) -> None:
    """``config.model`` keys the zoo model does not have, named with suggestions."""
    from bnnlab import models  # on use: config_lib itself imports no JAX

    if c.trainer != "supervised" or c.model_name not in models.available():
        return  # an unknown name is reported when the model is built, with the valid ones
    bad = config_ranges.unknown_model_keys(c, models.architecture_fields(c.model_name))
    if bad:
        raise ValueError(f"Unknown config key(s) for model {c.model_name!r}: {', '.join(bad)}.")

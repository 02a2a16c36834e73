"""A byte-level BitNet language model on the help text that ships with CPython: float, ternary
(BitNet b1.58) or binary (BitNet) weights on the same unmodified Flax decoder.

The model (``bnnlab.models.transformer.ByteLM``: 2 pre-norm blocks, width 128, 4 heads, GELU
MLP, learned positions, 128-byte context) is plain Flax; ``bnnlab.quantize_model`` rules turn
its attention and MLP projections into BitLinear layers — absmean ternary (or centred binary)
weights, per-token 8-bit absmax inputs behind a parameter-free RMS sub-layer norm — with the
byte embedding and the LM head in float, as the papers do (docs/transformers.md). Text:
``pydoc_data.topics`` (79 topics, 0.46 MB), whole topics held out for the test split.

Command:
  python -m bnnlab.main --config=experiments/bitnet_lm.py:runlocal --workdir=workdirs/lm
Variants: ``runlocal`` (ternary), ``runlocal,weights=binary``, ``runlocal,weights=float``.
Training as BitNet b1.58 (AdamW β = (0.9, 0.95), weight decay 0.1, warm-up then decay, a higher
lr than the float model's because ternary weights move only when their latent values cross a
rounding threshold); scaled to 2 CPU cores.

Expected (2-core CPU, measured; test-text perplexity per byte, README): see the README's table
"Ternary and binary transformers". The papers' scale (BitNet b1.58 700M-3.9B on 100B tokens of
RedPajama) needs a text corpus pipeline bnnlab does not have yet.
"""

from bnnlab import config_lib

VARIANTS = ("runlocal", "runlocal,weights=binary", "runlocal,weights=float")
WEIGHTS = {"ternary": "ternary_absmean", "binary": "binary_absmean", "float": None}


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, runlocal=True, weights="ternary")
    if arg.weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {tuple(WEIGHTS)}, got {arg.weights!r}.")
    c = config_lib.base()
    c.model_name = "byte_lm"
    c.dataset = "pydoc"
    c.augment = ""
    c.normalization = ""
    if WEIGHTS[arg.weights] is not None:
        c.quant.kernel = WEIGHTS[arg.weights]
        c.quant.inputs = "token_absmax"
        c.quant.input_norm = "rms"
    c.optimizer = "adamw"
    c.b1, c.b2 = 0.9, 0.95
    c.weight_decay = 0.1
    # BitNet b1.58 trains its 1.58-bit models at a higher lr than the float ones (1.5e-3 vs
    # the float LLaMA's 3e-4 at 700M); at this size 3e-3 and 1e-3.
    c.lr = 1e-3 if arg.weights == "float" else 3e-3
    c.schedule = "cosine"
    c.schedule_unit = "step"
    c.warmup_epochs = 1
    c.num_epochs = 8
    c.batch_size = 32
    c.eval_batch_size = 64
    c.label_smoothing = 0.0
    c.grad_clip_norm = 1.0
    c.log_every_steps = 50
    c.eval_every_epochs = 4
    c.checkpoint_every_steps = 500
    c.diagnostics_every_steps = 0  # weight diagnostics follow QuantConv/QuantDense layers
    # No decay on biases, norm gains and positions (as BitNet's and DeiT's training code).
    c.weight_decay_rules = ((r".*/(bias|scale)|positions", 0.0),)
    c.compute_dtype = "float32"
    c.data_workers = 0
    return c

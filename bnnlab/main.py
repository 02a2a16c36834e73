"""Entry point: ``python -m bnnlab.main --config=experiments/simaN_r18.py[:arg] [--workdir=DIR]``.

Kept short on purpose: the work is in ``bnnlab.train``, which tests call directly. Config
fields can be overridden on the command line (``--config.lr=0.05``); a mistyped key is an error
before any compute. Without ``--workdir`` the run goes to ``workdirs/<recipe>[_<arg>]``, so
running the same command again resumes an interrupted run.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Recipe file, e.g. experiments/simaN_r18.py:runlocal.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints and metrics (default: workdirs/<recipe>[_<arg>])."
)
_STOP_AT = flags.DEFINE_integer("stop_at", None, "Stop (and checkpoint) at this step.")
# Keys of a reconfigurable model (config.trainer = "reconfig"): run-time inputs, never config.
_USER_KEY = flags.DEFINE_string("user_key_file", None, "File with the user key.")
_DEVICE_KEY = flags.DEFINE_string("device_key_file", None, "File with the 256-bit device key.")
_DEVICE = flags.DEFINE_integer(
    "simulated_device", None, "Seed of a simulated SRAM-PUF device (a demo: protects nothing)."
)
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Full tracebacks for --config mistakes (default: one line each)."
)
flags.mark_flags_as_required(["config"])


def default_workdir(config_flag: str) -> str:
    """``experiments/simaN_r18.py:runlocal`` → ``workdirs/simaN_r18_runlocal``."""
    path, _, arg = config_flag.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    suffix = "".join(c if c.isalnum() or c in "-." else "_" for c in arg)
    return os.path.join("workdirs", name + (f"_{suffix}" if suffix else ""))


class _QuietOrbax(logging.Filter):
    """Orbax logs every save step at INFO; keep its warnings and errors only, less the
    tracebacks of a save the disk refused (each of its threads logs one; bnnlab reports the
    failure once, as ``storage.SaveFailed``)."""

    def filter(self, record):
        if "orbax" not in record.pathname and record.name != "asyncio":
            return True
        if record.levelno < logging.WARNING:
            return False
        from bnnlab.runs import storage

        error = record.exc_info[1] if record.exc_info else None
        return (
            storage.write_failure(error) is None
            and storage.write_failure(Exception(record.getMessage())) is None
        )


def _quiet_closed_loop(hook):
    """A failed orbax save leaves tensorstore callbacks aimed at its closed event loop; they
    end as "Event loop is closed" unraisable errors, noise after the one ``SaveFailed``."""

    def unraisable(info):
        if isinstance(info.exc_value, RuntimeError) and str(info.exc_value) == (
            "Event loop is closed"
        ):
            return
        hook(info)

    return unraisable


def _refusals():
    """Errors that mean the run cannot go on as asked (a busy or full workdir, a changed
    config, unreadable checkpoints): shown as their message alone, without a traceback."""
    from bnnlab.reconfig import guard, keys
    from bnnlab.runs import checkpoint, identity, lock, storage

    return (
        keys.BadKey,
        guard.WrongKeys,
        lock.WorkdirBusy,
        identity.ConfigChanged,
        checkpoint.NoRestorableCheckpoint,
        checkpoint.CheckpointUnreadable,
        storage.WorkdirNotWritable,
        storage.SaveFailed,
    )


def initialize_distributed(jax) -> None:
    """``jax.distributed.initialize`` for ``config.distributed``.

    With JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
    JAX_PROCESS_ID set, those are used (any cluster, or several processes on one machine);
    otherwise JAX detects the cluster itself (Cloud TPU pods, SLURM, Open MPI, Kubernetes).
    """
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address:
        jax.distributed.initialize()
        return
    missing = [k for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if k not in os.environ]
    if missing:
        raise app.UsageError(
            f"JAX_COORDINATOR_ADDRESS={address} is set but {', '.join(missing)} is not: set "
            "all three (or none, to let JAX detect the cluster)."
        )
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]),
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    # Imported here so flag errors do not wait for JAX (a :runlocal recipe loads the zoo, JAX too).
    import jax

    from bnnlab import train

    # The config is validated once, by the trainer, before any data or compute.
    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].serialize().split("=", 1)[1])
    if config.distributed:
        initialize_distributed(jax)
    logging.info(
        "JAX %s, process %d/%d, devices: %s",
        jax.__version__,
        jax.process_index(),
        jax.process_count(),
        jax.devices(),
    )
    logging.info("workdir: %s", workdir)
    try:
        if config.trainer == "reconfig":
            from bnnlab.reconfig import keys, trainer

            material = keys.load(
                _USER_KEY.value, _DEVICE_KEY.value, _DEVICE.value, demo=config.reconfig.demo_keys
            )
            result = trainer.train_and_evaluate(config, workdir, material, stop_at=_STOP_AT.value)
        else:
            result = train.train_and_evaluate(config, workdir, stop_at=_STOP_AT.value)
    except _refusals() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if not result:
        return
    print(
        f"final eval: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}"
        + (f" ({result['examples']} examples)" if "examples" in result else "")
    )
    for name, value in sorted(result.items()):
        if name.startswith(("accuracy/", "loss/")):  # per task
            print(f"final eval {name}: {value:.4f}")
    if jax.process_index() == 0:
        print(closing_block(workdir, config))


def closing_block(workdir: str, config) -> str:
    """Where a finished run's results are and what to run next."""
    lines = [
        f"results in {workdir}: checkpoints/, metrics.jsonl, config.json",
        "next:",
        f"  tensorboard --logdir {workdir}  # curves and diagnostics",
    ]
    if config.trainer == "reconfig":
        lines.append(f"  python -m bnnlab.reconfig --workdir={workdir} [key flags]  # a task")
    else:
        lines += [
            f"  python -m bnnlab.diagnostics --workdir={workdir}  # per-layer table and plots",
            f"  python -m bnnlab.export --workdir={workdir}  # packed model, checked",
        ]
    return "\n".join(lines)


class _QuietBackendProbe(logging.Filter):
    """JAX logs, at INFO, each accelerator plugin it could not load (``Unable to initialize
    backend 'tpu'``) on every machine without one: not news on a CPU or GPU machine."""

    def filter(self, record):
        return not record.getMessage().startswith("Unable to initialize backend")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("jax._src.xla_bridge").addFilter(_QuietBackendProbe())
    logging.getLogger("absl").addFilter(_QuietOrbax())
    # Orbax's save tasks that the full disk failed too ("exception was never retrieved").
    logging.getLogger("asyncio").addFilter(_QuietOrbax())
    sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)
    from bnnlab import config_args

    config_args.check_or_exit(sys.argv)
    app.run(main)

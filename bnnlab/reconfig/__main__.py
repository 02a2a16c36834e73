"""Evaluate a trained reconfigurable model on one task (or all), given the keys:

    python -m bnnlab.reconfig --workdir=DIR [--task=task1] [--user_key_file=F]
        [--device_key_file=F | --simulated_device=SEED] [--demo_keys]

Keys other than the ones the run was trained with are refused (its ``key_check.json``); a
model run under them anyway (e.g. a stolen copy) computes noise at about chance accuracy.
"""

from __future__ import annotations

import sys

from absl import app, flags

from bnnlab.reconfig import guard, keys
from bnnlab.reconfig import run as run_lib

flags.DEFINE_string("workdir", None, "Workdir of a reconfigurable training run.", required=True)
flags.DEFINE_string("task", None, "Task id (default: every task).")
flags.DEFINE_string("user_key_file", None, "File with the user key (or BNNLAB_USER_KEY).")
flags.DEFINE_string("device_key_file", None, "256-bit device key file (or BNNLAB_DEVICE_KEY).")
flags.DEFINE_integer(
    "simulated_device", None, "Seed of a simulated SRAM-PUF device (a demo: protects nothing)."
)
flags.DEFINE_bool("demo_keys", False, "Use the public demo keys for missing ones.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # Unused.
    try:
        material = keys.load(
            FLAGS.user_key_file, FLAGS.device_key_file, FLAGS.simulated_device, FLAGS.demo_keys
        )
        run = run_lib.load(FLAGS.workdir)
        run.check_keys(material)
        for task_id in [FLAGS.task] if FLAGS.task else [t.task_id for t in run.tasks]:
            print(f"{task_id}: accuracy {run.evaluate(task_id, material):.4f}")
    except (keys.BadKey, guard.WrongKeys) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)

"""Evaluate a trained reconfigurable model on one task (or all), given the keys:

    python -m bnnlab.reconfig --workdir=DIR [--task=task1] [--user_key_file=F]
        [--device_key_file=F | --simulated_device=SEED] [--demo_keys]

A wrong user key or another device's root key gives other permutations and a model that
computes garbage (about chance accuracy); there is no key check to bypass.
"""

from __future__ import annotations

from absl import app, flags

from bnnlab.reconfig import keys
from bnnlab.reconfig import run as run_lib

flags.DEFINE_string("workdir", None, "Workdir of a reconfigurable training run.", required=True)
flags.DEFINE_string("task", None, "Task id (default: every task).")
flags.DEFINE_string("user_key_file", None, "File with the user key (or BNNLAB_USER_KEY).")
flags.DEFINE_string("device_key_file", None, "256-bit device key file (or BNNLAB_DEVICE_KEY).")
flags.DEFINE_integer("simulated_device", None, "Seed of a simulated SRAM-PUF device.")
flags.DEFINE_bool("demo_keys", False, "Use the public demo keys for missing ones.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # Unused.
    run = run_lib.load(FLAGS.workdir)
    material = keys.load(
        FLAGS.user_key_file, FLAGS.device_key_file, FLAGS.simulated_device, demo=FLAGS.demo_keys
    )
    for task_id in [FLAGS.task] if FLAGS.task else [t.task_id for t in run.tasks]:
        print(f"{task_id}: accuracy {run.evaluate(task_id, material):.4f}")


if __name__ == "__main__":
    app.run(main)

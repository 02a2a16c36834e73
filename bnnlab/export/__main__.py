"""Export a training run for packed inference and check it on the run's test set:

    python -m bnnlab.export --workdir=workdirs/simaN_r18_runlocal [--out=FILE.npz]
        [--step=N] [--backend=auto|pallas|interpret|xla] [--check=true]

Prints the file size against the float32 parameter size, then (``--check``) how many test
predictions of the packed model equal the trained model's and the largest logit difference.
"""

from __future__ import annotations

import os

from absl import app, flags

from bnnlab import export, runs
from bnnlab.export import check
from bnnlab.kernels import backend as backend_lib

flags.DEFINE_string("workdir", None, "Training workdir to export.", required=True)
flags.DEFINE_string("out", None, "Output .npz (default: <workdir>/export/packed.npz).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.DEFINE_enum("backend", "auto", list(backend_lib.BACKENDS), "XNOR kernel backend.")
flags.DEFINE_bool("check", True, "Compare with the trained model on the test set.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # Unused.
    out = FLAGS.out or os.path.join(FLAGS.workdir, "export", "packed.npz")
    run = runs.load(FLAGS.workdir, FLAGS.step)  # read once, for the export and the check
    print(export.export_run(run, out))
    if FLAGS.check:
        print(check.against_run(export.load(out), run, FLAGS.backend))


if __name__ == "__main__":
    app.run(main)

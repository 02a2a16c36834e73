"""Export a training run for packed inference and check it on the run's test set:

    python -m bnnlab.export --workdir=workdirs/simaN_r18_runlocal [--out=FILE.npz]
        [--step=N] [--backend=auto|pallas|interpret|xla] [--check=true]
        [--format=npz|tflite] [--tflite_fused=false] [--tflite_batch=1]

Prints the file size against the float32 parameter size, then (``--check``) how many test
predictions of the packed model equal the trained model's and the largest logit difference.
``--format=tflite`` also writes ``<out>.tflite`` for TFLite with Larq Compute Engine's ops
(``bnnlab.export.tflite``) and, with ``--check``, runs the test set through it in LCE's
interpreter when its virtualenv exists (``python -m bnnlab.export.tflite.lce --setup``).
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
flags.DEFINE_enum("format", "npz", ["npz", "tflite"], "npz, or npz and a .tflite (LCE) file.")
flags.DEFINE_bool(
    "tflite_fused",
    False,
    "Put multiplier and bias into LceBconv2d (faster, "
    "LCE's float formula) instead of bnnlab's exact MUL and ADD.",
)
flags.DEFINE_integer("tflite_batch", 1, "The .tflite file's batch size.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # Unused.
    out = FLAGS.out or os.path.join(FLAGS.workdir, "export", "packed.npz")
    run = runs.load(FLAGS.workdir, FLAGS.step)  # read once, for the export and the check
    print(export.export_run(run, out))
    packed = export.load(out)
    if FLAGS.check:
        print(check.against_run(packed, run, FLAGS.backend))
    if FLAGS.format == "tflite":
        from bnnlab.export import tflite

        target = os.path.splitext(out)[0] + ".tflite"
        print(tflite.write(packed, target, FLAGS.tflite_batch, fused=FLAGS.tflite_fused))
        if FLAGS.check:
            print(check.tflite_against_run(target, packed, run))


if __name__ == "__main__":
    app.run(main)

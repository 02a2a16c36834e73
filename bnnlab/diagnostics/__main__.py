"""Report on a training workdir (``bnnlab.diagnostics.report``):

python -m bnnlab.diagnostics --workdir=DIR [--step=N] [--out=DIR]
"""

from __future__ import annotations

import jax
from absl import app, flags

flags.DEFINE_string("workdir", None, "Training workdir to inspect.", required=True)
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.DEFINE_string("out", None, "Output directory (default: <workdir>/inspect).")


def main(argv):
    del argv  # Unused.
    jax.config.update("jax_platforms", "cpu")  # inspecting needs no accelerator
    from bnnlab.diagnostics import report

    report.inspect_run(flags.FLAGS.workdir, flags.FLAGS.step, flags.FLAGS.out)


if __name__ == "__main__":
    app.run(main)

"""Report on a training workdir (``bnnlab.diagnostics.report``):

python -m bnnlab.diagnostics --workdir=DIR [--step=N] [--out=DIR]
"""

from __future__ import annotations

import logging

import jax
from absl import app, flags
from absl import logging as absl_logging

flags.DEFINE_string("workdir", None, "Training workdir to inspect.", required=True)
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.DEFINE_string("out", None, "Output directory (default: <workdir>/inspect).")


class _QuietOrbax(logging.Filter):
    """Orbax narrates every restore (and warns that a checkpoint lacks optional metadata): a
    reader of the report needs neither; its errors still show."""

    def filter(self, record):
        return "orbax" not in record.pathname or record.levelno >= logging.ERROR


def main(argv):
    del argv  # Unused.
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("absl").addFilter(_QuietOrbax())
    logging.getLogger().addFilter(_QuietOrbax())
    jax.config.update("jax_platforms", "cpu")  # inspecting needs no accelerator
    # One-off statistics: XLA's optimisation passes would cost more compile time than they
    # save (the codes are order statistics, the same at any optimisation level).
    jax.config.update("jax_disable_most_optimizations", True)
    from bnnlab.diagnostics import report

    report.inspect_run(flags.FLAGS.workdir, flags.FLAGS.step, flags.FLAGS.out)


if __name__ == "__main__":
    app.run(main)

"""``python -m bnnlab.inspect --workdir=DIR [--step=N] [--out=DIR]``: the report on a training
workdir, the same command as ``python -m bnnlab.diagnostics`` (``bnnlab.diagnostics.report``):
the per-layer table, ``weights.png``, ``diagnostics.png``, ``curves.png`` and ``layers.json``.
"""

from __future__ import annotations

from absl import app

from bnnlab.diagnostics.__main__ import main

if __name__ == "__main__":
    app.run(main)

"""The run's console: log lines print whole above the progress bar (not glued onto it), and
each program's first compilation is announced once."""

import io
import logging
import sys

from bnnlab.train import console


def test_log_lines_print_above_the_progress_bar(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)  # setLevel, not .level =: it clears the loggers' level cache
    try:
        bar = console.ProgressBar(total=10, initial=0)
        bar.update(3)
        logging.info("eval at step 3: accuracy 0.5")
        bar.update(2)
        bar.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert handler.stream is err  # restored
    lines = [line.split("\r")[-1] for line in err.getvalue().split("\n")]
    assert "eval at step 3: accuracy 0.5" in lines, err.getvalue()
    assert "5/10" in err.getvalue()


def test_each_compilation_is_announced_once(caplog):
    notices = console.CompileNotices()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            notices.before("train", "the training step")
        notices.before("eval", "the eval step")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Compiling the training step (first call; later calls reuse it).",
        "Compiling the eval step (first call; later calls reuse it).",
    ]

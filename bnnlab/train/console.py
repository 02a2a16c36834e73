"""What a run prints while it trains: a progress bar that log lines do not break, and a line
before each program that takes a while to compile the first time it runs.

While the bar is up, every console log handler (absl's and the root logger's stderr stream
handlers) writes through ``tqdm.write``, which clears the bar, prints the line and redraws
the bar below it (what ``tqdm.contrib.logging.logging_redirect_tqdm`` does for plain stream
handlers; absl's handler wraps its stream handler, so it is redirected here by hand).
"""

from __future__ import annotations

import contextlib
import logging
import sys

from absl import logging as absl_logging


class _BarStream:
    """A file-like stream that prints whole lines above the progress bar."""

    def __init__(self, tqdm_class, stream):
        self._tqdm, self._stream, self._pending = tqdm_class, stream, ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._tqdm.write(line, file=self._stream)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._tqdm.write(self._pending, file=self._stream)
            self._pending = ""
        self._stream.flush()


def _console_handlers():
    handlers = [absl_logging.get_absl_handler().python_handler, *logging.getLogger().handlers]
    return [
        h
        for h in dict.fromkeys(handlers)
        if isinstance(h, logging.StreamHandler) and h.stream in (sys.stderr, sys.stdout)
    ]


class ProgressBar:
    """A tqdm bar over the run's steps; log lines print above it while it is open."""

    def __init__(self, total: int, initial: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr)
        self._restore = contextlib.ExitStack()
        for handler in _console_handlers():
            old = handler.stream
            handler.setStream(_BarStream(tqdm, old))
            self._restore.callback(handler.setStream, old)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, **values) -> None:
        self.bar.set_postfix(**values)

    def close(self) -> None:
        self._restore.close()
        self.bar.close()


def progress_bar(config, primary: bool, total: int, initial: int) -> ProgressBar | None:
    if not (config.progress_bar and primary and sys.stderr.isatty()):
        return None
    return ProgressBar(total, initial)


class CompileNotices:
    """One log line before the first call of each jitted program of a run."""

    def __init__(self):
        self._seen: set[str] = set()

    def before(self, name: str, what: str) -> None:
        if name not in self._seen:
            self._seen.add(name)
            logging.info("Compiling %s (first call; later calls reuse it).", what)

"""One run per workdir: a second run is refused naming the first; a killed run's lock is gone."""

import os
import signal
import subprocess
import sys

import pytest

from bnnlab import train
from bnnlab.runs import lock

import recipes

HOLD = (
    "import sys, time\n"
    "from bnnlab.runs import lock\n"
    "lock.WorkdirLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_second_run_is_refused_and_a_killed_holder_releases(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            lock.WorkdirBusy, match=f"in use by another run \\(process {holder.pid} on"
        ):
            train.train_and_evaluate(recipes.config("smoke", total_steps=4), tmp_path)
        assert not (tmp_path / "checkpoints").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with lock.WorkdirLock(tmp_path):  # the kernel dropped the killed process's lock
        with pytest.raises(lock.WorkdirBusy):  # and a held lock refuses even this process
            lock.WorkdirLock(tmp_path).acquire()

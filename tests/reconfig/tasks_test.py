"""Task specs: the errors for unknown task ids (lookup), transforms and datasets (parse)."""

import pytest

from bnnlab.reconfig import tasks

TASKS = tasks.parse(("digits", "digits:pixels", "digits:labels"))


def test_unknown_task_and_bad_specs():
    with pytest.raises(ValueError, match="Unknown task id 'task7'; this model has task0, task1"):
        tasks.lookup(TASKS, "task7")
    with pytest.raises(ValueError, match="unknown transform 'rotate'"):
        tasks.parse(("digits:rotate",))
    with pytest.raises(ValueError, match="Unknown dataset 'digit'"):
        tasks.parse(("digit",))

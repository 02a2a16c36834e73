"""The training system: ``train_and_evaluate(config, workdir)`` and its parts."""

from bnnlab.train.loop import train_and_evaluate

__all__ = ["train_and_evaluate"]

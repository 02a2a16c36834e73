"""Deterministic, resumable batching on grain: the batch of global step s is a pure function of
(seed, s), so resuming at step s replays exactly the data an uninterrupted run would see.

Each epoch is a fresh permutation drawn from (seed, epoch); augmentation randomness comes from
(seed, step) for the whole global batch. On a multi-host slice every process loads only its
slice of each global batch, with that slice of the random draws. ``TrainLoader.iterate``
serves the batches through a grain dataset whose element s is the batch of step s: decoding
and augmentation run in ``workers`` worker processes (each makes whole batches, in step order)
or, with ``workers=0``, in background threads of this process. The iterator's grain state is
what the checkpoint stores (``DataIterator.get_state``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

# The grain dataset spans this many steps: far beyond any run (grain datasets are lazy).
MAX_STEPS = 2**40
STEP_KEY = "_step"  # the global step each served batch belongs to (checked by the loop)
MAX_AUTO_WORKERS = 32


def resolve_workers(workers: int, decodes: bool = True) -> int:
    """``config.data_workers``: a count, or -1 for one per CPU core but one (at most 32) when
    the dataset's records are decoded (ImageNet's JPEGs), else 0: for in-memory arrays
    (CIFAR) moving batches between processes costs more than augmenting them
    (``benchmarks/input_pipeline.py``)."""
    if workers == -1:
        if not decodes:
            return 0
        return max(0, min(MAX_AUTO_WORKERS, (os.cpu_count() or 1) - 1))
    if workers < 0:
        raise ValueError(
            f"config.data_workers must be -1 (one per core but one) or >= 0, got {workers}."
        )
    return workers


def _grain():
    """grain, importable where absl flags were never parsed (tests, notebooks, benchmarks).

    grain reads its options from absl flags and refuses to run before they are parsed;
    ``python -m bnnlab.main`` parses them, other programs get grain's defaults.
    """
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return grain


class TrainLoader:
    """Shuffled training batches by global step (the remainder of each epoch is dropped)."""

    def __init__(
        self,
        source,
        global_batch: int,
        seed: int,
        preprocess: Callable,
        process_index: int = 0,
        process_count: int = 1,
        finish: Callable | None = None,
    ):
        """``preprocess(examples, rng, shard=...)`` augments a batch (in the workers);
        ``finish(batch)``, if given, completes it in the consuming process (normalisation:
        the workers then send uint8 images)."""
        if global_batch % process_count:
            raise ValueError(
                f"batch_size {global_batch} must divide evenly over {process_count} processes."
            )
        if len(source) < global_batch:
            raise ValueError(
                f"batch_size {global_batch} is larger than the training set ({len(source)})."
            )
        self.source = source
        self.global_batch = global_batch
        self.local_batch = global_batch // process_count
        self.seed = seed
        self.preprocess = preprocess
        self.finish = finish
        self.process_index = process_index
        self.steps_per_epoch = len(source) // global_batch
        self._perm_epoch, self._perm = None, None

    def __getstate__(self):  # worker processes get the recipe, not the cached permutation
        return {**self.__dict__, "_perm_epoch": None, "_perm": None}

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
            self._perm_epoch = epoch
        return self._perm

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of the global batch of ``step``: the same examples, in the
        same places, with the same augmentation whatever the number of processes."""
        batch = self._augmented(step)
        return batch if self.finish is None else self.finish(batch)

    def _augmented(self, step: int) -> dict[str, np.ndarray]:
        epoch, i = divmod(int(step), self.steps_per_epoch)
        start = i * self.global_batch
        offset = self.process_index * self.local_batch
        global_indices = np.sort(self._permutation(epoch)[start : start + self.global_batch])
        indices = global_indices[offset : offset + self.local_batch]
        # The generator of the global batch, identical in every process (the trailing 0 keeps
        # the streams of runs from before multi-process training was tested).
        rng = np.random.default_rng([self.seed, 1, int(step), 0])
        shard = (offset, self.global_batch)
        return self.preprocess(self.source.get(indices), rng, shard=shard)

    def _served(self, step: int) -> dict[str, np.ndarray]:
        return {**self._augmented(step), STEP_KEY: np.asarray(step, np.int64)}

    def iterate(
        self, start_step: int, workers: int = 0, state: dict | None = None, prefetch: int = 2
    ) -> DataIterator:
        """Batches from ``start_step`` on (or from a saved ``state``), prepared ahead by
        ``workers`` processes (0: ``prefetch`` threads of this process)."""
        return DataIterator(self, start_step, workers, state, prefetch)


class DataIterator(Iterator[dict]):
    """The batches of consecutive steps, with a checkpointable state.

    ``get_state()`` is a JSON-able dict: the step the grain dataset starts at, the number of
    workers and grain's own iterator state. Restoring it with the same worker count hands the
    state to grain; with another count (a resumed run on a different machine) the iterator
    starts afresh at the saved step, which serves the same batches because batch s is a pure
    function of s.
    """

    def __init__(self, loader: TrainLoader, start_step: int, workers: int, state, prefetch):
        if workers < 0:  # -1 ("auto") is resolved by the caller, which knows the dataset
            raise ValueError(f"workers must be >= 0 (see resolve_workers), got {workers}.")
        resume_grain = state is not None and state.get("workers") == workers
        if state is not None:
            start_step = int(state["start_step"] if resume_grain else state["step"])
        self._start, self._workers = int(start_step), workers
        self._finish = loader.finish
        self._iterator = iter(self._dataset(loader, self._start, workers, prefetch))
        if resume_grain:
            self._iterator.set_state(state["grain"])
        self._next_step = int(state["step"]) if state is not None else self._start

    @staticmethod
    def _dataset(loader: TrainLoader, start_step: int, workers: int, prefetch: int):
        grain = _grain()
        dataset = grain.MapDataset.range(start_step, MAX_STEPS).map(loader._served)
        if workers:
            options = grain.MultiprocessingOptions(
                num_workers=workers, per_worker_buffer_size=max(1, prefetch)
            )
            # Inside a worker, no read-ahead threads: grain's default (16 threads, 500
            # elements) would make hundreds of batches per worker; the worker's output
            # buffer is the prefetch.
            in_worker = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
            return dataset.to_iter_dataset(in_worker).mp_prefetch(options)
        read = grain.ReadOptions(num_threads=max(1, prefetch), prefetch_buffer_size=prefetch)
        return dataset.to_iter_dataset(read)

    def __next__(self) -> dict:
        batch = dict(next(self._iterator))
        served = int(batch.pop(STEP_KEY))
        if served != self._next_step:  # a state from another dataset or a grain bug
            raise RuntimeError(
                f"The input pipeline served the batch of step {served} where step "
                f"{self._next_step} was due; the saved data state does not belong to this run."
            )
        self._next_step += 1
        return batch if self._finish is None else self._finish(batch)

    def get_state(self) -> dict:
        return {
            "step": self._next_step,
            "start_step": self._start,
            "workers": self._workers,
            "grain": self._iterator.get_state(),
        }

    def close(self) -> None:
        """Stops the workers and threads now (grain would otherwise do it when the iterator is
        garbage collected, which at interpreter exit is too late to be clean)."""
        iterator, self._iterator = self._iterator, None
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def eval_batches(
    source, global_batch: int, preprocess: Callable, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Every example once, in order; the last batch is zero-padded to the full per-process
    size, and every batch carries a ``mask`` (False on the padding)."""
    local = global_batch // process_count
    n = len(source)
    for start in range(0, n, global_batch):
        lo = min(n, start + process_index * local)
        hi = min(n, lo + local)
        indices = np.arange(lo, hi)
        batch = preprocess(source.get(indices)) if len(indices) else None
        mask = np.zeros(local, bool)
        mask[: len(indices)] = True
        if batch is None:  # this process has no examples left in the final batch
            shape_src = preprocess(source.get(np.arange(1)))
            batch = {k: np.zeros((0, *v.shape[1:]), v.dtype) for k, v in shape_src.items()}
        pad = local - len(indices)
        batch = {
            k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) if pad else v
            for k, v in batch.items()
        }
        batch["mask"] = mask
        yield batch

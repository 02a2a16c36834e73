"""Deterministic, resumable batching: the batch of global step s is a pure function of
(seed, s), so resuming at step s replays exactly the data an uninterrupted run would see.

Each epoch is a fresh permutation drawn from (seed, epoch); augmentation randomness comes from
(seed, step, process). On a multi-host slice every process loads only its slice of each global
batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np


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
    ):
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
        self.process_index = process_index
        self.steps_per_epoch = len(source) // global_batch
        self._perm_epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
            self._perm_epoch = epoch
        return self._perm

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, i = divmod(int(step), self.steps_per_epoch)
        start = i * self.global_batch + self.process_index * self.local_batch
        indices = np.sort(self._permutation(epoch)[start : start + self.local_batch])
        rng = np.random.default_rng([self.seed, 1, int(step), self.process_index])
        return self.preprocess(self.source.get(indices), rng)

    def iterate(self, start_step: int, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
        """Batches from ``start_step`` on, prepared ``prefetch`` ahead in a background thread."""
        q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()

        def produce():
            step = start_step
            try:
                while not stop.is_set():
                    q.put(self.batch(step))
                    step += 1
            except Exception as e:  # surfaced in the consumer
                q.put(e)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.01)


def eval_batches(
    source, global_batch: int, preprocess: Callable, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Every example once, in order; the last batch is padded and carries a ``mask``."""
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

"""Images per second of the training input pipeline: ImageNet's train transform at 224 from
encoded JPEGs in an array_record file, and the CIFAR transform, for 0, 1, 2 … worker processes,
against the loader bnnlab had before grain.

    python benchmarks/input_pipeline.py [--images=2000] [--batch=128] [--batches=12]
                                        [--workers=0,1,2]

The ImageNet-like data is made at run time: ``--images`` JPEGs (quality 90, sizes drawn around
ImageNet's typical 500×375, either orientation, smooth colour fields with texture so the codec
works as on photographs), written as one array_record file (a 4-byte label, then the JPEG
bytes), the format ``tfds.data_source`` reads ImageNet from. Rows:

* ``before grain``: what the loader did before: TFDS decoded every JPEG in full when a record
  was read, then the NumPy augmentation (random-resized crop of the decoded array, flip,
  normalise), one batch after another in one Python thread (its prefetch thread added no
  parallelism under the GIL). The normalisation is today's (faster) one, so the ratio is if
  anything understated.
* ``grain, W workers``: ``TrainLoader.iterate`` on the encoded records, as ``data.build``
  sets it up: the crop box from the JPEG header, a decode of that box only (DCT-scaled when
  the crop is large) and the flip in W processes each making whole batches of uint8 images
  (W = 0: threads of this process), the normalisation in this process.

Timing: after one warm-up batch (worker start-up excluded), ``--batches`` batches; images/s =
batch · batches / elapsed. Ratios are within one run. Set BNNLAB_BENCH_CORES to record how many
cores the machine has.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import struct
import tempfile
import time

import numpy as np
from array_record.python import array_record_module
from PIL import Image

from bnnlab.data import augment, pipeline, sources

# ResNet-18's training rate on one H100-class GPU, images/s (mixed precision, ImageNet at 224;
# order of magnitude from the issue and the peers' published numbers, not measured here).
GPU_IMAGES_PER_SEC = 3000


def synthetic_jpeg(rng: np.random.Generator) -> bytes:
    w, h = int(rng.normal(500, 60)), int(rng.normal(375, 45))
    if rng.random() < 0.25:  # portrait
        w, h = h, w
    w, h = max(w, 160), max(h, 160)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(2, 9, size=3)
    base = np.stack(
        [np.sin(f[0] * xx + rng.uniform(0, 6)), np.cos(f[1] * yy), np.sin(f[2] * (xx + yy))], -1
    )
    image = np.clip(127 + 90 * base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_array_record(path: str, n: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    total = 0
    for _ in range(n):
        record = struct.pack("<i", int(rng.integers(1000))) + synthetic_jpeg(rng)
        total += len(record)
        writer.write(record)
    writer.close()
    return total


class JpegRecords:
    """array_record of (label, JPEG) records as a bnnlab source; ``decode=True`` decodes in
    full on read, as TFDS does unless told to skip decoding."""

    def __init__(self, path: str, decode: bool):
        self.path, self.decode = path, decode
        self._reader = None

    def __getstate__(self):  # readers are opened per process
        return {"path": self.path, "decode": self.decode, "_reader": None}

    def _records(self, indices):
        if self._reader is None:
            self._reader = array_record_module.ArrayRecordReader(self.path)
        return self._reader.read([int(i) for i in indices])

    def __len__(self) -> int:
        if self._reader is None:
            self._reader = array_record_module.ArrayRecordReader(self.path)
        return self._reader.num_records()

    def get(self, indices):
        records = self._records(indices)
        labels = np.asarray([struct.unpack("<i", r[:4])[0] for r in records], np.int32)
        images = [r[4:] for r in records]
        if self.decode:
            images = [augment.decode(b) for b in images]
        return {"image": images, "label": labels}


def rate(next_batch, batch: int, batches: int) -> float:
    next_batch()  # warm-up (and worker start-up)
    start = time.perf_counter()
    for _ in range(batches):
        next_batch()
    return batch * batches / (time.perf_counter() - start)


def measure(loader, batch: int, batches: int, workers: list[int]) -> dict[str, float]:
    out = {}
    steps = iter(range(10**9))
    out["before grain"] = rate(lambda: loader.batch(next(steps)), batch, batches)
    for w in workers:
        it = loader.iterate(0, workers=w)
        try:
            out[f"grain, {w} workers"] = rate(lambda it=it: next(it), batch, batches)
        finally:
            it.close()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--workers", default="0,1,2")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    cores = os.environ.get("BNNLAB_BENCH_CORES", str(os.cpu_count()))

    imagenet = functools.partial(
        augment.train_preprocess, augment="imagenet", normalization="imagenet", image_size=224
    )
    # What bnnlab.data.build gives the loader: augmentation in the workers (uint8 out),
    # normalisation in the training process.
    augment_only = functools.partial(augment.train_augment, augment="imagenet", image_size=224)
    normalize = functools.partial(augment.finish, normalization="imagenet")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "imagenet_like.array_record")
        start = time.perf_counter()
        size = write_array_record(path, args.images)
        print(
            f"{args.images} synthetic JPEGs, {size / args.images / 1e3:.0f} kB each, written in "
            f"{time.perf_counter() - start:.0f} s; {cores} CPU cores"
        )
        results = {}
        before = pipeline.TrainLoader(JpegRecords(path, decode=True), args.batch, 0, imagenet)
        encoded = pipeline.TrainLoader(
            JpegRecords(path, decode=False), args.batch, 0, augment_only, finish=normalize
        )
        old = measure(before, args.batch, args.batches, [])
        new = measure(encoded, args.batch, args.batches, workers)
        results["imagenet"] = {"before grain": old["before grain"]} | {
            k: v for k, v in new.items() if k != "before grain"
        }
        results["imagenet"]["encoded, no workers, one thread"] = new["before grain"]

    cifar_source = sources.fake(50_000, (32, 32, 3), 10)
    cifar = functools.partial(augment.train_augment, augment="crop_flip")
    cifar_finish = functools.partial(augment.finish, normalization="cifar")
    results["cifar10"] = measure(
        pipeline.TrainLoader(cifar_source, 256, 0, cifar, finish=cifar_finish),
        256,
        args.batches * 4,
        workers,
    )

    for name, rows in results.items():
        print(f"\n{name} train transform, images/s:")
        base = rows["before grain"]
        for row, value in rows.items():
            print(f"  {row:<34} {value:9.0f}   {value / base:5.2f}× before")
    best_one = results["imagenet"].get("grain, 1 workers")
    if best_one:
        print(
            f"\nImageNet per worker process (one core): {best_one:.0f} images/s; "
            f"a GPU training ResNet-18 at {GPU_IMAGES_PER_SEC} images/s needs about "
            f"{GPU_IMAGES_PER_SEC / best_one:.0f} such cores."
        )


if __name__ == "__main__":
    main()

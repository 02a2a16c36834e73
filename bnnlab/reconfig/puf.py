"""A simulated SRAM PUF with a code-offset fuzzy extractor: a **demo** of where a device root
key comes from, not a source of secrets (docs/reconfigurable.md, "Keys").

A simulated device is a bit string fixed by a public integer seed, so its "root key" is a
public function of that seed: it makes the mechanism runnable and testable, it protects
nothing. A real device reads its SRAM power-up state, or the owner gives a 256-bit key file.

Every read flips each cell with a small probability, as SRAM power-up states do. Enrolment
stores public helper data h = r ⊕ C(s) (code-offset construction, C a 31-fold repetition code,
s a 256-bit secret drawn with ``secrets`` unless a seed is given for reproducibility);
reconstruction decodes r' ⊕ h by majority vote, which recovers s exactly as long as fewer than
half of each group's bits flipped; the root key is SHA-256(s).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

import numpy as np

KEY_BYTES = 32
REPETITION = 31  # bits per key bit in the fuzzy extractor (corrects up to 15 flips per group)
CELLS = 8 * KEY_BYTES * REPETITION


@dataclasses.dataclass(frozen=True)
class DemoSimulatedPUF:
    """A simulated device's SRAM power-up fingerprint (demo only: ``secret_seed`` is public
    wherever it is written, e.g. on a command line)."""

    secret_seed: int
    flip_probability: float = 0.05

    @property
    def size(self) -> int:
        return CELLS

    def _reference(self) -> np.ndarray:
        return np.random.default_rng([self.secret_seed, 0]).integers(0, 2, self.size, np.uint8)

    def read(self, read_seed=None) -> np.ndarray:
        """One noisy power-up read of the cells."""
        rng = np.random.default_rng(read_seed)
        flips = (rng.random(self.size) < self.flip_probability).astype(np.uint8)
        return self._reference() ^ flips


def enroll(response: np.ndarray, rng_seed=None) -> tuple[bytes, np.ndarray]:
    """(root key, public helper data) from one enrolment read. The secret is drawn with
    ``secrets`` unless ``rng_seed`` asks for a reproducible (non-secret) one."""
    if response.size != CELLS:
        raise ValueError(f"PUF response must have {CELLS} bits, got {response.size}.")
    if rng_seed is None:
        raw = np.frombuffer(secrets.token_bytes(KEY_BYTES), np.uint8)
        secret = np.unpackbits(raw)
    else:
        secret = np.random.default_rng(rng_seed).integers(0, 2, 8 * KEY_BYTES, np.uint8)
    helper = response ^ np.repeat(secret, REPETITION)
    return _root_key(secret), helper


def reconstruct(response: np.ndarray, helper: np.ndarray) -> bytes:
    """The root key from a later noisy read and the helper data (majority decoding)."""
    if response.shape != helper.shape:
        raise ValueError(f"PUF response {response.shape} and helper {helper.shape} differ.")
    votes = (response ^ helper).reshape(-1, REPETITION).sum(axis=1)
    return _root_key((votes > REPETITION // 2).astype(np.uint8))


def _root_key(bits: np.ndarray) -> bytes:
    return hashlib.sha256(np.packbits(bits).tobytes()).digest()


def demo_device_root_key(device_seed: int, read_seed=None) -> bytes:
    """Root key of simulated device ``device_seed`` (demo: a public function of the seed):
    enrol once, then rebuild the key from another noisy read, as a device would at every
    power-up. With 5 % flips per read and 31-fold repetition a group fails only if 16 of its
    31 bits disagree (≈ 10⁻⁹ per group). ``read_seed`` picks the power-up read."""
    device = DemoSimulatedPUF(device_seed)
    _, helper = enroll(device.read(read_seed=[device_seed, 1]), rng_seed=[device_seed, 2])
    return reconstruct(device.read([device_seed, 3] if read_seed is None else read_seed), helper)

"""Keys of the reconfigurable BNN: a device root key from a (simulated) hardware fingerprint, a
user key, and the per-task seed and per-layer permutations derived from them.

    root_key  = SHA-256(fuzzy_extract(PUF response, helper data))   or a 256-bit secret file
    task_seed = HMAC-SHA256(root_key, user_key ‖ task_id)
    π_{l,t}   = jax.random.permutation(fold_in(key(task_seed), l), n_l)

(docs/reconfigurable.md, "Keys"; the paper names an SRAM PUF but publishes no key-derivation
function, so this is bnnlab's design). A wrong user key, or the right user key on another
device, gives unrelated permutations: there is no key check to bypass, the model simply
computes garbage. Keys are inputs at run time only; nothing here writes them anywhere.

The PUF is simulated: a device is a secret bit string whose every read flips each bit with a
small probability, as SRAM power-up states do. Enrolment stores public helper data
h = r ⊕ C(k) (code-offset construction with a repetition code C); reconstruction decodes
r' ⊕ h by majority vote, which recovers k exactly as long as fewer than half of each group's
bits flipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

KEY_BYTES = 32
REPETITION = 31  # bits per key bit in the fuzzy extractor (corrects up to 15 flips per group)


@dataclasses.dataclass(frozen=True)
class SimulatedPUF:
    """A device's SRAM power-up fingerprint: fixed secret bits read with random bit flips."""

    secret_seed: int
    flip_probability: float = 0.05

    @property
    def size(self) -> int:
        return 8 * KEY_BYTES * REPETITION

    def _reference(self) -> np.ndarray:
        return np.random.default_rng([self.secret_seed, 0]).integers(0, 2, self.size, np.uint8)

    def read(self, read_seed: int | None = None) -> np.ndarray:
        """One noisy power-up read of the cells."""
        rng = np.random.default_rng(read_seed)
        flips = (rng.random(self.size) < self.flip_probability).astype(np.uint8)
        return self._reference() ^ flips


def enroll(response: np.ndarray, rng_seed: int | None = None) -> tuple[bytes, np.ndarray]:
    """(root key, public helper data) from one enrolment read of the PUF."""
    if response.size != 8 * KEY_BYTES * REPETITION:
        raise ValueError(
            f"PUF response must have {8 * KEY_BYTES * REPETITION} bits, got {response.size}."
        )
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


def read_key_file(path: str | os.PathLike) -> bytes:
    """A 256-bit secret from a file: 32 raw bytes, or 64 hex characters."""
    raw = pathlib.Path(path).read_bytes()
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except ValueError:
            pass
    if len(raw) == KEY_BYTES:
        return raw
    raise ValueError(
        f"Key file {path} must hold {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex characters "
        f"(got {len(raw)} bytes)."
    )


def task_seed(root_key: bytes, user_key: bytes, task_id: str) -> bytes:
    """HMAC-SHA256(root_key, user_key ‖ task_id): the secret that selects one task."""
    if len(root_key) != KEY_BYTES:
        raise ValueError(f"The device root key must be {KEY_BYTES} bytes, got {len(root_key)}.")
    if not user_key:
        raise ValueError("The user key is empty.")
    message = user_key + b"\x00" + task_id.encode()
    return hmac.new(root_key, message, hashlib.sha256).digest()


def _prng_key(seed: bytes) -> jax.Array:
    words = np.frombuffer(seed[:8], dtype=np.uint32)
    return jax.random.wrap_key_data(jnp.asarray(words, jnp.uint32), impl="threefry2x32")


def layer_permutations(seed: bytes, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """π for every keyed layer: layer ``i`` (in sorted path order) folds ``i`` into the key."""
    key = _prng_key(seed)
    return {
        path: np.asarray(jax.random.permutation(jax.random.fold_in(key, i), n), np.int32)
        for i, (path, n) in enumerate(sorted(sizes.items()))
    }


DEMO_USER_KEY = b"bnnlab public demo user key"
DEMO_DEVICE_SEED = 20230401  # public: the demo keys protect nothing, they make :runlocal run


@dataclasses.dataclass(frozen=True)
class KeyMaterial:
    """The two secrets a reconfigurable model needs at run time. Its repr never shows them."""

    user_key: bytes = dataclasses.field(repr=False)
    root_key: bytes = dataclasses.field(repr=False)

    def __post_init__(self):
        if not self.user_key:
            raise ValueError("The user key is empty.")
        if len(self.root_key) != KEY_BYTES:
            raise ValueError(
                f"The device root key must be {KEY_BYTES} bytes, got {len(self.root_key)}."
            )

    def seed(self, task_id: str) -> bytes:
        return task_seed(self.root_key, self.user_key, task_id)


def simulated_device_root_key(device_seed: int, read_seed=None) -> bytes:
    """Root key of a simulated device: enrol once (helper data), then rebuild the key from
    another noisy read, as the device would at every power-up. With 5 % bit flips per read and
    31-fold repetition, a group fails only if 16 of its 31 bits disagree (≈ 10⁻⁹ per group).
    ``read_seed`` picks the power-up read (a fixed one by default, for reproducible runs)."""
    puf = SimulatedPUF(device_seed)
    _, helper = enroll(puf.read(read_seed=[device_seed, 1]), rng_seed=[device_seed, 2])
    return reconstruct(puf.read([device_seed, 3] if read_seed is None else read_seed), helper)


def load(
    user_key_file=None,
    device_key_file=None,
    simulated_device: int | None = None,
    demo: bool = False,
) -> KeyMaterial:
    """Key material from files or the environment (never from the config).

    User key: ``user_key_file`` or the ``BNNLAB_USER_KEY`` environment variable (text).
    Device root key: ``device_key_file`` (256-bit secret), ``BNNLAB_DEVICE_KEY`` (64 hex
    characters), or ``simulated_device`` (the seed of a simulated SRAM-PUF device).
    ``demo=True`` fills anything missing with public demo keys (for ``:runlocal``).
    """
    user = pathlib.Path(user_key_file).read_bytes().strip() if user_key_file else None
    user = user or os.environ.get("BNNLAB_USER_KEY", "").encode() or None
    if device_key_file:
        root = read_key_file(device_key_file)
    elif os.environ.get("BNNLAB_DEVICE_KEY"):
        root = bytes.fromhex(os.environ["BNNLAB_DEVICE_KEY"])
    elif simulated_device is not None:
        root = simulated_device_root_key(simulated_device)
    else:
        root = None
    if demo:
        user = user or DEMO_USER_KEY
        root = root or simulated_device_root_key(DEMO_DEVICE_SEED)
    if user is None or root is None:
        missing = [name for name, v in (("user key", user), ("device root key", root)) if not v]
        raise ValueError(
            f"Missing {' and '.join(missing)}: pass --user_key_file / BNNLAB_USER_KEY and "
            "--device_key_file / BNNLAB_DEVICE_KEY / --simulated_device (or use the recipe's "
            ":runlocal variant, which uses public demo keys)."
        )
    return KeyMaterial(user, root)

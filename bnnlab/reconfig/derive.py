"""The pinned key derivation of the reconfigurable BNN, version 1 (docs/reconfigurable.md,
"Keys"). Everything a key selects is computed here from HMAC-SHA256 alone, so no library's
random-number generator, setting or upgrade can change what the owner's keys compute.

    msg(p₁, …, p_k) = LABEL ‖ len(p₁) ‖ p₁ ‖ … ‖ len(p_k) ‖ p_k     (4-byte big-endian lengths)
    task_seed_t     = HMAC(root_key, msg("task-seed", user_key, task_id))
    model_seed      = HMAC(root_key, msg("model-seed", user_key))      (masks of shared rows)
    check           = HMAC(root_key, msg("key-check", user_key))[:16]  (stored with the run)
    stream(s, ctx)  = HMAC(s, msg(ctx) ‖ 0) ‖ HMAC(s, msg(ctx) ‖ 1) ‖ …  (8-byte counters;
                      NIST SP 800-108 counter mode), read as big-endian uint64 words w₀, w₁, …
    π_{l,t}         = Fisher–Yates on (0 … n−1) with ctx = "perm" ‖ layer path: for i = n−1 … 1,
                      j = w mod (i+1) for the next word w ≥ (2⁶⁴ − (i+1)) mod (i+1) (rejection:
                      exactly uniform), swap positions i and j
    mask u          = 2·(w ≫ 11)·2⁻⁵³ − 1 ∈ [−1, 1) per element, ctx = "mask" ‖ variable path

Word i of a permutation's stream belongs to position n−1−i; a rejected word (probability below
2⁻⁴⁴ at any layer size) is replaced by the words of ctx ‖ "retry" ‖ position, in order. All
256 bits of a seed key every HMAC. The length prefixes keep (user key, task id) pairs from
colliding; LABEL carries the version, so a future derivation cannot be mistaken for this one.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

VERSION = 1
LABEL = b"bnnlab/reconfigurable-bnn/v1"
CHECK_BYTES = 16
_WORD = 8


def message(*parts: bytes) -> bytes:
    """The domain-separated, length-prefixed HMAC message of ``parts``."""
    return LABEL + b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def task_seed(root_key: bytes, user_key: bytes, task_id: str) -> bytes:
    """The 256-bit secret that selects task ``task_id``."""
    return hmac.digest(root_key, message(b"task-seed", user_key, task_id.encode()), "sha256")


def model_seed(root_key: bytes, user_key: bytes) -> bytes:
    """The 256-bit secret of the rows every task shares (RSign, RPReLU, the head bias)."""
    return hmac.digest(root_key, message(b"model-seed", user_key), "sha256")


def check_value(root_key: bytes, user_key: bytes) -> str:
    """The run's key check (hex). It confirms a key pair without revealing it: a guess can be
    tested with it only by holding both keys, which the model itself already allows."""
    return hmac.digest(root_key, message(b"key-check", user_key), "sha256")[:CHECK_BYTES].hex()


def stream(seed: bytes, context: bytes, nbytes: int) -> bytes:
    """``nbytes`` of the counter-mode HMAC-SHA256 stream of ``seed`` under ``context``."""
    base = hmac.new(seed, message(context), hashlib.sha256)
    blocks = []
    for counter in range(-(-nbytes // 32)):
        h = base.copy()
        h.update(counter.to_bytes(8, "big"))
        blocks.append(h.digest())
    return b"".join(blocks)[:nbytes]


def words(seed: bytes, context: bytes, n: int) -> np.ndarray:
    """The first ``n`` big-endian uint64 words of the stream."""
    return np.frombuffer(stream(seed, context, _WORD * n), dtype=">u8").astype(np.uint64)


def _accepted(candidates: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    # w is accepted iff w ≥ 2⁶⁴ mod m: the accepted range holds a whole number of multiples of m.
    return candidates >= (np.uint64(0) - bounds) % bounds


def permutation(seed: bytes, path: str, n: int) -> np.ndarray:
    """π of the layer at ``path`` with ``n`` latent entries (int32)."""
    if n < 1:
        raise ValueError(f"A permutation needs at least one element, got n = {n}.")
    context = b"perm" + path.encode()
    bounds = np.arange(n, 1, -1, dtype=np.uint64)  # i + 1 for i = n−1 … 1
    draws = words(seed, context, n - 1)
    ok = _accepted(draws, bounds)
    for k in np.flatnonzero(~ok):
        position = n - 1 - int(k)
        retry = context + b"retry" + position.to_bytes(8, "big")
        count = 1
        while True:
            candidates = words(seed, retry, count)
            good = np.flatnonzero(_accepted(candidates, bounds[k : k + 1]))
            if good.size:
                draws[k] = candidates[good[0]]
                break
            count *= 2
    swaps = (draws % bounds).tolist()
    order = list(range(n))
    for i, j in zip(range(n - 1, 0, -1), swaps, strict=True):
        order[i], order[j] = order[j], order[i]
    return np.asarray(order, np.int32)


def uniform_mask(seed: bytes, path: str, n: int) -> np.ndarray:
    """``n`` keyed values in [−1, 1): the float64 value of each word, rounded to float32."""
    w = words(seed, b"mask" + path.encode(), n)
    return (2.0 * (w >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 1.0).astype(np.float32)

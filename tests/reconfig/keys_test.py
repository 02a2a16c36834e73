"""Keys and their derivation: the demo SRAM-PUF with its fuzzy extractor, the pinned HMAC
derivation (test vectors, an independent reference, every seed byte matters, no JAX PRNG),
and key hygiene (weak keys, readable files, errors that name their source)."""

import hashlib
import hmac
import os
import stat

import jax
import numpy as np
import pytest

from bnnlab.reconfig import derive, keys, puf

ROOT = bytes(range(32))
USER = b"alice's user key"


def test_puf_reads_are_noisy_but_reconstruct_one_key():
    device = puf.DemoSimulatedPUF(7, flip_probability=0.05)
    a, b = device.read(1), device.read(2)
    assert 0.05 < np.mean(a != b) < 0.15  # two reads differ in ≈ 2p(1 − p) of the cells
    root, helper = puf.enroll(device.read(3), rng_seed=4)
    for read in range(5, 25):
        assert puf.reconstruct(device.read(read), helper) == root
    other = puf.DemoSimulatedPUF(8)
    assert puf.reconstruct(other.read(5), helper) != root  # another device, same helper
    assert puf.demo_device_root_key(7) != puf.demo_device_root_key(8)
    # Without a seed, enrolment draws its secret with `secrets`: two enrolments differ.
    assert puf.enroll(device.read(3))[0] != puf.enroll(device.read(3))[0]


# Test vectors of derivation version 1: any change to the derivation breaks them (and every
# owner's trained model with it), so a change must come with a new derive.VERSION.
SEED_TASK0 = "a2a542f36ce1cb8b054ba66e020cb8d7605b2dd12e93b950e90f736ccfa2954f"
PERM_1000 = [917, 676, 206, 856, 909, 808, 436, 592]
PERM_36864 = [23281, 28860, 30752, 32313, 8178, 12279, 14130, 31356]
CHECK = "91b7dcb38903926d66fa72acfe49a7aa"


def test_derivation_test_vectors():
    seed = derive.task_seed(ROOT, USER, "task0")
    assert seed.hex() == SEED_TASK0
    assert derive.check_value(ROOT, USER) == CHECK
    assert derive.permutation(seed, "stage1_block1/conv", 1000)[:8].tolist() == PERM_1000
    assert derive.permutation(seed, "stage1_block1/conv", 36864)[:8].tolist() == PERM_36864
    mask = derive.uniform_mask(seed, "stem_bn/scale_mask", 4)
    np.testing.assert_allclose(mask, [0.393065065, 0.235631987, -0.551954448, 0.944474220])


def _reference_permutation(seed: bytes, path: str, n: int) -> list[int]:
    """The documented derivation written independently: one HMAC per word, Python integers."""

    def msg(*parts):
        return derive.LABEL + b"".join(len(p).to_bytes(4, "big") + p for p in parts)

    def word_stream(context):
        counter = 0
        while True:
            block = hmac.new(seed, msg(context) + counter.to_bytes(8, "big"), "sha256").digest()
            for k in range(0, 32, 8):
                yield int.from_bytes(block[k : k + 8], "big")
            counter += 1

    main = word_stream(b"perm" + path.encode())
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        m = i + 1
        w = next(main)
        if w < 2**64 % m:  # rejected: this position's retry words, in order
            retry = word_stream(b"perm" + path.encode() + b"retry" + i.to_bytes(8, "big"))
            w = next(x for x in retry if x >= 2**64 % m)
        j = w % m
        order[i], order[j] = order[j], order[i]
    return order


@pytest.mark.parametrize("n", [1, 2, 37, 1000])
def test_permutation_equals_an_independent_reference(n):
    seed = derive.task_seed(ROOT, USER, "task1")
    assert derive.permutation(seed, "fc", n).tolist() == _reference_permutation(seed, "fc", n)


def test_rejected_words_are_redrawn_from_the_retry_stream(monkeypatch):
    # Word 0 cannot be accepted for m = 3 (2⁶⁴ mod 3 = 1): force it and check the retry rule.
    real = derive.words

    def words(seed, context, n):
        if context == b"perm" + b"x":
            return np.zeros(n, np.uint64)  # accepted for m = 4 and 2 (2⁶⁴ mod m = 0), not 3
        return real(seed, context, n)

    monkeypatch.setattr(derive, "words", words)
    seed = bytes(32)
    retry = real(seed, b"permx" + b"retry" + (2).to_bytes(8, "big"), 4)
    first_ok = int(next(w for w in retry if w >= 2**64 % 3))
    # i = 3: j = 0; i = 2: j = retry word mod 3; i = 1: j = 0.
    order = [0, 1, 2, 3]
    order[3], order[0] = order[0], order[3]
    j = first_ok % 3
    order[2], order[j] = order[j], order[2]
    order[1], order[0] = order[0], order[1]
    assert derive.permutation(seed, "x", 4).tolist() == order


def test_every_seed_byte_changes_the_permutation():
    seed = derive.task_seed(ROOT, USER, "task0")
    base = derive.permutation(seed, "stage1_block1/conv", 4096)
    for byte in (0, 7, 8, 20, 31):
        flipped = bytearray(seed)
        flipped[byte] ^= 1
        other = derive.permutation(bytes(flipped), "stage1_block1/conv", 4096)
        assert np.sum(base == other) <= 6, byte  # ≈ 1 fixed point between independent ones


@pytest.mark.parametrize("partitionable", [False, True])
def test_permutations_do_not_depend_on_jax_prng_settings(partitionable):
    from bnnlab.reconfig import tasks

    template = {
        "a": {"perm": jax.ShapeDtypeStruct((1000,), np.int32)},
        "b": {"bias_shared_mask": jax.ShapeDtypeStruct((8,), np.float32)},
    }
    task = tasks.Task("task0", "digits", "", 10, 0)
    material = keys.KeyMaterial(USER, ROOT)
    with jax.threefry_partitionable(partitionable):
        got = tasks.task_collections(template, [task], material)[0]["task"]
    assert np.asarray(got["a"]["perm"])[:8].tolist() == PERM_1000_A
    np.testing.assert_array_equal(
        got["b"]["bias_shared_mask"],
        derive.uniform_mask(material.model_seed(), "b/bias_shared_mask", 8),
    )


PERM_1000_A = derive.permutation(derive.task_seed(ROOT, USER, "task0"), "a", 1000)[:8].tolist()


def test_messages_are_length_prefixed_and_labelled():
    # (user "ab", task "c") and (user "a", task "bc") must not share a seed.
    assert derive.task_seed(ROOT, b"ab" * 8, "c") != derive.task_seed(ROOT, b"ab" * 8 + b"c", "")
    expected = hmac.new(
        ROOT,
        derive.LABEL
        + b"\x00\x00\x00\x09task-seed"
        + len(USER).to_bytes(4, "big")
        + USER
        + b"\x00\x00\x00\x05task0",
        hashlib.sha256,
    ).digest()
    assert derive.task_seed(ROOT, USER, "task0") == expected
    assert b"v1" in derive.LABEL and derive.VERSION == 1


def test_weak_keys_are_refused():
    with pytest.raises(keys.BadKey, match="only 1 distinct byte"):
        keys.KeyMaterial(USER, bytes(32))
    with pytest.raises(keys.BadKey, match="only 2 distinct"):
        keys.KeyMaterial(USER, b"\x00\x01" * 16)
    with pytest.raises(keys.BadKey, match="must be 32 bytes"):
        keys.KeyMaterial(USER, ROOT[:16])
    with pytest.raises(keys.BadKey, match="has 1 bytes; a user key needs at least 16"):
        keys.KeyMaterial(b"x", ROOT)
    with pytest.raises(keys.BadKey, match="one repeated byte"):
        keys.KeyMaterial(b"a" * 20, ROOT)


def test_key_files_and_environment(tmp_path, monkeypatch):
    for name, content in (("raw", ROOT), ("hex", ROOT.hex().encode() + b"\n"), ("user", USER)):
        (tmp_path / name).write_bytes(content)
        os.chmod(tmp_path / name, 0o600)
    assert keys.read_key_file(tmp_path / "raw") == keys.read_key_file(tmp_path / "hex") == ROOT
    (tmp_path / "bad").write_text("123")
    os.chmod(tmp_path / "bad", 0o600)
    with pytest.raises(keys.BadKey, match=f"device key file {tmp_path / 'bad'} must hold 32"):
        keys.read_key_file(tmp_path / "bad")
    with pytest.raises(keys.BadKey, match=r"Cannot read device key file .*missing"):
        keys.read_key_file(tmp_path / "missing")
    material = keys.load(tmp_path / "user", tmp_path / "hex")
    assert (material.user_key, material.root_key) == (USER, ROOT)
    assert "alice" not in repr(material) and ROOT.hex() not in repr(material)
    assert str(tmp_path / "user") in material.source and not material.demo
    monkeypatch.delenv(keys.USER_ENV, raising=False)
    monkeypatch.delenv(keys.DEVICE_ENV, raising=False)
    with pytest.raises(keys.BadKey, match="Missing user key and device root key"):
        keys.load()
    monkeypatch.setenv(keys.USER_ENV, "bob's long user key")
    monkeypatch.setenv(keys.DEVICE_ENV, ROOT.hex())
    assert keys.load() == keys.KeyMaterial(b"bob's long user key", ROOT)
    monkeypatch.setenv(keys.DEVICE_ENV, "zz" * 32)
    with pytest.raises(keys.BadKey, match=r"\$BNNLAB_DEVICE_KEY has 64 characters but .* not hex"):
        keys.load()
    monkeypatch.setenv(keys.DEVICE_ENV, "abc")
    with pytest.raises(keys.BadKey, match=r"\$BNNLAB_DEVICE_KEY must be 64 hexadecimal .* got 3"):
        keys.load()
    monkeypatch.setenv(keys.USER_ENV, "bob")
    with pytest.raises(keys.BadKey, match=r"\$BNNLAB_USER_KEY has 3 bytes"):
        keys.load()


def test_readable_key_files_warn(tmp_path):
    path = tmp_path / "device.key"
    path.write_text(ROOT.hex())
    os.chmod(path, 0o644)
    with pytest.warns(keys.KeyFileWarning, match=f"{path} can be read by other users.*chmod 600"):
        keys.read_key_file(path)
    os.chmod(path, 0o600)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keys.read_key_file(path)


def test_new_key_files_are_random_private_and_never_overwritten(tmp_path, capsys):
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    keys.main(["keys", str(a), str(b)])
    assert "wrote a new 256-bit key" in capsys.readouterr().out
    assert stat.S_IMODE(a.stat().st_mode) == 0o600
    assert keys.read_key_file(a) != keys.read_key_file(b)
    with pytest.raises(SystemExit):
        keys.main(["keys", str(a)])
    assert "exists: not overwriting" in capsys.readouterr().err


def test_demo_keys_are_marked(monkeypatch):
    monkeypatch.delenv(keys.USER_ENV, raising=False)
    monkeypatch.delenv(keys.DEVICE_ENV, raising=False)
    material = keys.load(demo=True)
    assert material == keys.demo_keys() and material.demo and "demo" in material.source
    assert keys.load(simulated_device=5, demo=True).demo

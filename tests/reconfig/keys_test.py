"""Key derivation: the simulated SRAM-PUF with its fuzzy extractor, HMAC task seeds, keyed
permutations and their docs/reconfigurable.md properties."""

import hashlib
import hmac

import numpy as np
import pytest

from bnnlab.reconfig import keys

ROOT = bytes(range(32))


def test_puf_reads_are_noisy_but_reconstruct_one_key():
    puf = keys.SimulatedPUF(7, flip_probability=0.05)
    a, b = puf.read(1), puf.read(2)
    assert 0.05 < np.mean(a != b) < 0.15  # two reads differ in ≈ 2p(1 − p) of the cells
    root, helper = keys.enroll(puf.read(3), rng_seed=4)
    for read in range(5, 25):
        assert keys.reconstruct(puf.read(read), helper) == root
    other = keys.SimulatedPUF(8)
    assert keys.reconstruct(other.read(5), helper) != root  # another device, same helper
    assert keys.simulated_device_root_key(7) != keys.simulated_device_root_key(8)


def test_task_seed_is_hmac_sha256():
    expected = hmac.new(ROOT, b"user\x00task1", hashlib.sha256).digest()
    assert keys.task_seed(ROOT, b"user", "task1") == expected
    assert keys.task_seed(ROOT, b"user", "task1") != keys.task_seed(ROOT, b"user", "task2")
    with pytest.raises(ValueError, match="root key must be 32 bytes"):
        keys.task_seed(b"short", b"user", "task1")
    with pytest.raises(ValueError, match="user key is empty"):
        keys.task_seed(ROOT, b"", "task1")


def test_key_files_and_environment(tmp_path, monkeypatch):
    (tmp_path / "raw").write_bytes(ROOT)
    (tmp_path / "hex").write_text(ROOT.hex() + "\n")
    assert keys.read_key_file(tmp_path / "raw") == keys.read_key_file(tmp_path / "hex") == ROOT
    (tmp_path / "bad").write_text("123")
    with pytest.raises(ValueError, match="must hold 32 raw bytes or 64 hex"):
        keys.read_key_file(tmp_path / "bad")
    (tmp_path / "user").write_text("alice\n")
    material = keys.load(tmp_path / "user", tmp_path / "hex")
    assert (material.user_key, material.root_key) == (b"alice", ROOT)
    assert "alice" not in repr(material) and ROOT.hex() not in repr(material)
    monkeypatch.delenv("BNNLAB_USER_KEY", raising=False)
    monkeypatch.delenv("BNNLAB_DEVICE_KEY", raising=False)
    with pytest.raises(ValueError, match="Missing user key and device root key"):
        keys.load()
    monkeypatch.setenv("BNNLAB_USER_KEY", "bob")
    monkeypatch.setenv("BNNLAB_DEVICE_KEY", ROOT.hex())
    assert keys.load() == keys.KeyMaterial(b"bob", ROOT)


def test_permutations_valid_deterministic_and_independent():
    sizes = {"stage1/conv": 36_864, "fc": 640}
    seed_a = keys.task_seed(ROOT, b"alice", "task0")
    perms_a = keys.layer_permutations(seed_a, sizes)
    for path, n in sizes.items():
        np.testing.assert_array_equal(np.sort(perms_a[path]), np.arange(n))
    again = keys.layer_permutations(seed_a, sizes)
    np.testing.assert_array_equal(again["fc"], perms_a["fc"])
    perms_b = keys.layer_permutations(keys.task_seed(ROOT, b"mallory", "task0"), sizes)
    n = sizes["stage1/conv"]
    # Fixed points of π_A⁻¹∘π_B: about 1 for a random pair (Poisson(1)).
    assert np.sum(perms_a["stage1/conv"] == perms_b["stage1/conv"]) <= 6
    # Sign agreement of the binary weights under the two keys: 0.5 ± 4/√n.
    theta = np.random.default_rng(0).normal(size=n)
    agreement = np.mean(
        np.sign(theta[perms_a["stage1/conv"]]) == np.sign(theta[perms_b["stage1/conv"]])
    )
    assert abs(agreement - 0.5) < 4 / np.sqrt(n)

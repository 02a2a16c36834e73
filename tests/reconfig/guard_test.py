"""The key record of a reconfigurable workdir: written once, atomically, by the first start;
checked on every later one; a damaged or old record is refused with its reason."""

import json

import pytest

from bnnlab.reconfig import guard, keys

RIGHT = keys.KeyMaterial(b"alice's user key", bytes(range(32)))
OTHER = keys.KeyMaterial(b"mallory's user key", bytes(range(32)))


def test_first_start_records_and_later_starts_verify(tmp_path):
    guard.check_workdir(tmp_path, RIGHT)
    record = json.loads((tmp_path / guard.FILE).read_text())
    assert record == {"derivation": 1, "check": RIGHT.check_value(), "demo_keys": False}
    assert [p.name for p in tmp_path.iterdir()] == [guard.FILE]  # no temporary left behind
    guard.check_workdir(tmp_path, RIGHT)
    with pytest.raises(guard.WrongKeys, match="not the keys the run in"):
        guard.check_workdir(tmp_path, OTHER)
    # The check value is not key material: it differs from every key and seed.
    for secret in (RIGHT.user_key, RIGHT.root_key, RIGHT.seed("task0"), RIGHT.model_seed()):
        assert secret.hex() not in record["check"] and record["check"] not in secret.hex()


def test_a_concurrent_first_start_keeps_the_first_record(tmp_path, monkeypatch):
    """Another start with other keys writes its record between our read and our write: ours
    is not linked over it, and we are checked against it."""
    real, calls = guard.read, []

    def read(workdir):
        calls.append(workdir)
        if len(calls) == 1:
            guard.check_workdir(tmp_path, RIGHT)  # the other start, first to write
            return None
        return real(workdir)

    monkeypatch.setattr(guard, "read", read)
    with pytest.raises(guard.WrongKeys, match="not the keys the run in"):
        guard.check_workdir(tmp_path, OTHER)
    monkeypatch.undo()
    assert guard.read(tmp_path)["check"] == RIGHT.check_value()  # not overwritten
    assert [p.name for p in tmp_path.iterdir()] == [guard.FILE]


def test_damaged_and_old_records_are_refused(tmp_path):
    (tmp_path / guard.FILE).write_text('{"derivation": 1, "che')
    with pytest.raises(guard.WrongKeys, match=r"cannot be read .* Restore it"):
        guard.check_workdir(tmp_path, RIGHT)
    (tmp_path / guard.FILE).write_text('{"derivation": 0, "check": "00"}')
    with pytest.raises(guard.WrongKeys, match=r"key derivation 0; .* derivation 1"):
        guard.check_workdir(tmp_path, RIGHT)
    demo = keys.demo_keys()
    (tmp_path / guard.FILE).write_text(json.dumps(guard.record_of(RIGHT)))
    with pytest.raises(guard.WrongKeys, match="its own keys, not the public demo keys"):
        guard.check_run(tmp_path, demo)
    (tmp_path / guard.FILE).write_text(json.dumps(guard.record_of(demo)))
    guard.check_run(tmp_path, demo)

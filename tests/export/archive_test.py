"""The export file: errors, and an atomic overwrite that keeps the previous export."""

import os
import stat

import numpy as np
import pytest

from bnnlab import export

from export_cases import model_and_variables, recipe


def test_errors_and_atomic_overwrite(tmp_path):
    ref, _, variables, shape, _ = model_and_variables(recipe("xnor_r18"), batch=2)
    path = tmp_path / "m.npz"
    export.export(ref, variables, shape, path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # shareable, not mkstemp's 0600
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"\.npz"):
        export.export(ref, variables, shape, tmp_path / "m.bin")
    # A failure while writing leaves the previous export untouched and no temporary behind.
    bad = dict(variables, params={"not": np.zeros(1, np.float32)})
    with pytest.raises(Exception):  # noqa: B017 - any failure mode of a broken state
        export.export(ref, bad, shape, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    packed = export.load(path)
    with pytest.raises(ValueError, match=r"\(2, 9, 9, 1\)"):
        packed(np.zeros((2, 9, 9, 1)))
    with pytest.raises(FileNotFoundError):
        export.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a bnnlab export"):
        export.load(tmp_path / "other.npz")

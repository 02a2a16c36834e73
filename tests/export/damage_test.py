"""A damaged export is refused with one error, and an export refuses images it was not trained
on: every array is checked against the manifest's shape, dtype and SHA-256 at load, the arrays
against the architecture, the images for dtype, finiteness and the trained range."""

import json
import zipfile

import jax
import numpy as np
import pytest

from bnnlab import export
from bnnlab.data import augment
from bnnlab.export import archive

from export_cases import model_and_variables, recipe


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    ref, _, variables, shape, _ = model_and_variables(recipe("simaN_r18"), batch=2)
    path = tmp_path_factory.mktemp("export") / "m.npz"
    export.export(ref, variables, shape, path, normalization="digits")
    return path, shape


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, out, change):
    """A copy of the archive with ``change(arrays, manifest)`` applied (manifest as a dict)."""
    arrays = _arrays(path)
    manifest = json.loads(str(arrays.pop("manifest.json")))
    change(arrays, manifest)
    np.savez_compressed(out, **arrays, **{"manifest.json": np.asarray(json.dumps(manifest))})
    return out


def test_every_flipped_byte_is_refused_or_harmless(exported, tmp_path):
    path, _ = exported
    original = _arrays(path)
    blob = path.read_bytes()
    with zipfile.ZipFile(path) as z:  # where each member's compressed bytes lie
        data = [
            (i.header_offset + 30 + len(i.filename) + len(i.extra), i.compress_size)
            for i in z.infolist()
        ]
    rng = np.random.default_rng(0)
    # Bytes inside member data (the weights) and anywhere in the file (headers, directory).
    positions = [
        int(o + rng.integers(s)) for o, s in (data[int(rng.integers(len(data)))] for _ in range(12))
    ]
    positions += [int(p) for p in rng.integers(len(blob), size=8)]
    refused = 0
    for pos in positions:
        damaged = bytearray(blob)
        damaged[pos] ^= 1 << int(rng.integers(8))
        (tmp_path / "d.npz").write_bytes(bytes(damaged))
        try:
            export.load(tmp_path / "d.npz")
        except export.DamagedExport as e:
            assert "Damaged export" in str(e) and "export the run again" in str(e)
            refused += 1
            continue
        # Not refused: the flip hit bytes that carry no data (a timestamp, say).
        got = _arrays(tmp_path / "d.npz")
        assert got.keys() == original.keys()
        for k in got:
            np.testing.assert_array_equal(got[k], original[k])
    assert refused >= 12  # every flip inside member data


def test_truncated_file_and_swapped_array_are_damaged(exported, tmp_path):
    path, _ = exported
    (tmp_path / "t.npz").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(export.DamagedExport):
        export.load(tmp_path / "t.npz")

    def swap(arrays, manifest):  # new values under the old manifest: the checksum catches it
        key = next(k for k in arrays if k.endswith("/multiplier"))
        arrays[key] = arrays[key] * 2

    with pytest.raises(export.DamagedExport, match="multiplier does not match its SHA-256"):
        export.load(_rewrite(path, tmp_path / "s.npz", swap))

    def reshape(arrays, manifest):
        key = next(k for k in arrays if k.startswith("float/params/") and arrays[k].ndim > 1)
        arrays[key] = arrays[key].reshape(-1)

    with pytest.raises(export.DamagedExport, match="the manifest says"):
        export.load(_rewrite(path, tmp_path / "r.npz", reshape))

    def drop(arrays, manifest):
        del arrays[next(k for k in arrays if k.endswith("/words"))]

    with pytest.raises(export.DamagedExport, match="missing"):
        export.load(_rewrite(path, tmp_path / "m.npz", drop))


def test_consistent_edits_that_do_not_fit_the_model_are_damaged(exported, tmp_path):
    path, _ = exported

    def words(arrays, manifest):  # fewer output channels, manifest updated to match
        key = next(k for k in arrays if k.endswith("/words"))
        arrays[key] = arrays[key][:-1]
        manifest["arrays"][key] = archive._entry(arrays[key])

    with pytest.raises(export.DamagedExport, match="packs to uint32"):
        export.load(_rewrite(path, tmp_path / "w.npz", words))

    def classifier(arrays, manifest):  # a float array of another shape, manifest updated
        key = next(k for k in arrays if k.startswith("float/params/") and k.endswith("bias"))
        arrays[key] = np.zeros(arrays[key].size + 1, arrays[key].dtype)
        manifest["arrays"][key] = archive._entry(arrays[key])

    with pytest.raises(export.DamagedExport, match="do not fit its architecture"):
        export.load(_rewrite(path, tmp_path / "c.npz", classifier))

    def model(arrays, manifest):
        manifest["model"]["name"] = "no_such_model"

    with pytest.raises(export.DamagedExport, match="model description does not build"):
        export.load(_rewrite(path, tmp_path / "n.npz", model))

    arrays = _arrays(path)  # a manifest cut short
    arrays["manifest.json"] = np.asarray(str(arrays["manifest.json"])[:-10])
    np.savez_compressed(tmp_path / "j.npz", **arrays)
    with pytest.raises(export.DamagedExport, match="manifest cannot be read"):
        export.load(tmp_path / "j.npz")


def test_version_1_files_still_load(exported, tmp_path):
    path, shape = exported

    def v1(arrays, manifest):
        manifest.update(version=1)
        del manifest["arrays"]

    old = export.load(_rewrite(path, tmp_path / "v1.npz", v1))
    x = np.zeros((2, *shape), np.float32)
    np.testing.assert_array_equal(old(x), export.load(path)(x))


def test_raw_pixels_are_preprocessed_as_in_evaluation(exported):
    """The export takes images as the dataset gives them (uint8, or unit floats like the
    embedded digits) and normalises them itself, exactly as the run's evaluation did."""
    path, shape = exported
    packed = export.load(path)
    rng = np.random.default_rng(1)
    unit = rng.uniform(0, 1, size=(3, *shape)).astype(np.float32)
    pixels = rng.integers(0, 256, size=(3, *shape)).astype(np.uint8)
    for raw in (unit, pixels):
        normalised = augment.normalize(augment.to_unit_float(raw), "digits")
        np.testing.assert_array_equal(packed(raw), packed(normalised, normalized=True))
        # Under the caller's jit the same preprocessing runs in jax.numpy.
        np.testing.assert_allclose(jax.jit(packed)(raw), packed(raw), rtol=1e-5, atol=1e-5)


def test_images_are_checked_for_dtype_finiteness_and_the_expected_range(exported):
    path, shape = exported
    packed = export.load(path)
    lo, hi = augment.input_range("digits")
    assert (lo, hi) == pytest.approx((-0.3049 / 0.3759, (1 - 0.3049) / 0.3759))
    rng = np.random.default_rng(0)
    unit = rng.uniform(0, 1, size=(2, *shape)).astype(np.float32)
    good = augment.normalize(unit, "digits")
    assert np.asarray(packed(unit)).shape == (2, 10)
    with pytest.raises(export.InvalidImages, match=r"got dtype uint8 \(raw pixels\? call without"):
        packed((255 * unit).astype(np.uint8), normalized=True)
    with pytest.raises(export.InvalidImages, match=r"Expected pixels .* got dtype int32"):
        packed((255 * unit).astype(np.int32))
    with pytest.raises(export.InvalidImages, match="complex"):
        packed(unit.astype(np.complex64))
    with pytest.raises(export.InvalidImages, match="bool"):
        packed(unit > 0.5)
    for value, count in ((np.nan, 1), (np.inf, 1)):
        bad = unit.copy()
        bad[0, 0, 0, 0] = value
        with pytest.raises(export.InvalidImages, match=f"{count} of {unit.size} .* NaN or inf"):
            packed(bad)
    gray_levels = np.floor(16 * unit)  # scikit-learn's digits: 0–16, not unit floats
    with pytest.raises(export.InvalidImages, match=r"outside \[0, 1\], the range of pixels"):
        packed(gray_levels)
    with pytest.raises(export.InvalidImages, match=r"already normalised .* normalized=True"):
        packed(good)  # normalised images passed as pixels
    with pytest.raises(export.InvalidImages, match=r"outside .* the range of the training"):
        packed(augment.normalize(good, "digits"), normalized=True)  # normalised twice
    # On purpose: noise far outside the range runs with the range check off.
    noise = (10 * rng.normal(size=(2, *shape))).astype(np.float32)
    assert np.isfinite(np.asarray(packed(noise, check_inputs=False, normalized=True))).all()
    jax.jit(lambda x: packed(x, normalized=True))(good)  # traces: dtype and shape only
    with pytest.raises(export.InvalidImages, match="shape"):
        packed(unit[:, :4])

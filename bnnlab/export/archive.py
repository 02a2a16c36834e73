"""The export file: one ``.npz`` holding the packed layers, the float variables and a JSON
manifest (format version, how to rebuild the architecture, the packed layers' geometry, and the
shape, dtype and SHA-256 of every array).

Keys: ``manifest.json`` (a 0-d unicode array, so loading needs no pickle), ``float/<collection>/
<module path>/<name>`` for every float variable, ``packed/<path>/{words,multiplier,bias}``.
The write goes to a temporary file renamed over the target, so a crash mid-save leaves any
previous export intact. ``load`` checks the file against its manifest (every array present with
the recorded shape, dtype and checksum, the packed words matching the layer geometry) and turns
any fault into one ``DamagedExport`` error, so a damaged file never yields altered weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
import zipfile
import zlib

import numpy as np
from flax import traverse_util

from bnnlab.export.fold import PackedConv

FORMAT = "bnnlab-packed"
VERSION = 2  # 2 added the per-array inventory ("arrays"); version 1 files still load
READABLE = (1, 2)
_PACKED_NAMES = ("words", "multiplier", "bias")


class DamagedExport(ValueError):
    """The file is a bnnlab export whose contents do not match its own manifest (or cannot be
    decoded): a truncated copy, bit rot, or an edit. Export the run again."""

    def __init__(self, path, problem: str):
        super().__init__(
            f"Damaged export {path}: {problem}. The file cannot be trusted; export the run "
            "again (python -m bnnlab.export --workdir=...)."
        )


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _entry(a: np.ndarray) -> dict:
    return dict(shape=list(a.shape), dtype=a.dtype.str, sha256=_digest(a))


def save(path, manifest: dict, float_vars: dict, packed: list[PackedConv]) -> pathlib.Path:
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"Export path must end in .npz, got {str(path)!r}.")
    arrays = {}
    for key, value in traverse_util.flatten_dict(float_vars, sep="/").items():
        arrays[f"float/{key}"] = np.asarray(value)
    for p in packed:
        for name in _PACKED_NAMES:
            arrays[f"packed/{p.path}/{name}"] = np.asarray(getattr(p, name))
    manifest = dict(
        manifest,
        format=FORMAT,
        version=VERSION,
        packed=[
            dict(
                path=p.path,
                shape=list(p.shape),
                strides=list(p.strides),
                padding=[list(q) for q in p.padding],
                pad_value=p.pad_value,
                folded_bn=p.folded_bn,
            )
            for p in packed
        ],
        arrays={key: _entry(a) for key, a in arrays.items()},
    )
    arrays["manifest.json"] = np.asarray(json.dumps(manifest, indent=1))
    write_shared(path, lambda f: np.savez_compressed(f, **arrays), suffix=".tmp.npz")
    return path


def write_shared(path: pathlib.Path, write, suffix: str = ".tmp") -> None:
    """Writes a file meant to be shared: ``write(f)`` fills a temporary beside ``path``,
    which replaces ``path`` only when complete (a crash leaves any previous file intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp creates 0600; an export is meant to be shared, so it gets the mode any new
        # file gets here (0666 less the umask), as np.savez would give it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask sets it
    process-wide for a moment, under other threads' feet)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _word_shape(shape) -> tuple[int, int]:
    """(O, k_h·k_w·⌈I/32⌉): the packed words of an HWIO kernel (``kernels.bitpack``)."""
    kh, kw, cin, cout = shape
    return (cout, kh * kw * -(-cin // 32))


def _check(path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    inventory = manifest.get("arrays")
    if inventory is not None:  # version 2: every array as recorded at save
        missing = sorted(set(inventory) - set(arrays))
        extra = sorted(set(arrays) - set(inventory))
        if missing or extra:
            raise DamagedExport(path, f"arrays missing {missing[:5]}, unexpected {extra[:5]}")
        for key, want in inventory.items():
            a = arrays[key]
            if list(a.shape) != want["shape"] or a.dtype.str != want["dtype"]:
                raise DamagedExport(
                    path,
                    f"{key} is {a.dtype.str}{list(a.shape)}, the manifest says "
                    f"{want['dtype']}{want['shape']}",
                )
            if _digest(a) != want["sha256"]:
                raise DamagedExport(path, f"{key} does not match its SHA-256 checksum")
    for layer in manifest["packed"]:
        prefix = f"packed/{layer['path']}/"
        for name in _PACKED_NAMES:
            if prefix + name not in arrays:
                raise DamagedExport(path, f"{prefix + name} is missing")
        words = arrays[prefix + "words"]
        cout = layer["shape"][3]
        if words.dtype != np.uint32 or words.shape != _word_shape(layer["shape"]):
            raise DamagedExport(
                path,
                f"{prefix}words is {words.dtype}{list(words.shape)}; a {layer['shape']} kernel "
                f"packs to uint32{list(_word_shape(layer['shape']))}",
            )
        for name in ("multiplier", "bias"):
            if arrays[prefix + name].shape != (cout,):
                raise DamagedExport(
                    path, f"{prefix}{name} has shape {arrays[prefix + name].shape}, not ({cout},)"
                )


def load(path) -> tuple[dict, dict, dict[str, dict]]:
    """(manifest, float variables, {path: {words, multiplier, bias}}), checked against the
    manifest (``DamagedExport`` if anything differs)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No export at {path}.")
    try:
        z = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"
        if zipped:
            raise DamagedExport(path, f"the archive cannot be opened ({e})") from e
        raise ValueError(f"{path} is not a bnnlab export (not an .npz archive).") from e
    with z:
        if "manifest.json" not in z.files:
            raise ValueError(f"{path} is not a bnnlab export (no manifest.json inside).")
        try:
            manifest = json.loads(str(z["manifest.json"]))
        except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise DamagedExport(path, f"its manifest cannot be read ({e})") from e
        if not isinstance(manifest, dict):
            raise DamagedExport(path, "its manifest is not a JSON object")
        if manifest.get("format") != FORMAT or manifest.get("version") not in READABLE:
            raise ValueError(
                f"{path}: unsupported export format {manifest.get('format')!r} version "
                f"{manifest.get('version')!r}; this bnnlab reads {FORMAT!r} versions "
                f"{', '.join(map(str, READABLE))}."
            )
        try:
            arrays = {k: z[k] for k in z.files if k != "manifest.json"}
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
            raise DamagedExport(path, f"an array cannot be decoded ({e})") from e
    try:
        _check(path, manifest, arrays)
    except (KeyError, TypeError, IndexError) as e:
        raise DamagedExport(path, f"its manifest is malformed ({type(e).__name__}: {e})") from e
    flat = {k[len("float/") :]: a for k, a in arrays.items() if k.startswith("float/")}
    packed = {
        layer["path"]: {n: arrays[f"packed/{layer['path']}/{n}"] for n in _PACKED_NAMES}
        for layer in manifest["packed"]
    }
    return manifest, traverse_util.unflatten_dict(flat, sep="/"), packed

"""The export file: one ``.npz`` holding the packed layers, the float variables and a JSON
manifest (format version, how to rebuild the architecture, the packed layers' geometry).

Keys: ``manifest.json`` (a 0-d unicode array, so loading needs no pickle), ``float/<collection>/
<module path>/<name>`` for every float variable, ``packed/<path>/{words,multiplier,bias}``.
The write goes to a temporary file renamed over the target, so a crash mid-save leaves any
previous export intact.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

import numpy as np
from flax import traverse_util

from bnnlab.export.fold import PackedConv

FORMAT = "bnnlab-packed"
VERSION = 1


def save(path, manifest: dict, float_vars: dict, packed: list[PackedConv]) -> pathlib.Path:
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"Export path must end in .npz, got {str(path)!r}.")
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
    )
    arrays = {"manifest.json": np.asarray(json.dumps(manifest, indent=1))}
    for key, value in traverse_util.flatten_dict(float_vars, sep="/").items():
        arrays[f"float/{key}"] = np.asarray(value)
    for p in packed:
        arrays[f"packed/{p.path}/words"] = p.words
        arrays[f"packed/{p.path}/multiplier"] = p.multiplier
        arrays[f"packed/{p.path}/bias"] = p.bias
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path) -> tuple[dict, dict, dict[str, dict]]:
    """(manifest, float variables, {path: {words, multiplier, bias}})."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No export at {path}.")
    with np.load(path, allow_pickle=False) as z:
        if "manifest.json" not in z.files:
            raise ValueError(f"{path} is not a bnnlab export (no manifest.json inside).")
        manifest = json.loads(str(z["manifest.json"]))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(
                f"{path}: unsupported export format {manifest.get('format')!r} version "
                f"{manifest.get('version')!r}; this bnnlab reads {FORMAT!r} version {VERSION}."
            )
        flat = {k[len("float/") :]: z[k] for k in z.files if k.startswith("float/")}
        packed: dict[str, dict] = {}
        for layer in manifest["packed"]:
            packed[layer["path"]] = {
                name: z[f"packed/{layer['path']}/{name}"]
                for name in ("words", "multiplier", "bias")
            }
    return manifest, traverse_util.unflatten_dict(flat, sep="/"), packed

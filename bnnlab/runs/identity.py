"""A workdir holds one run: on resume, the config must be the one ``config.json`` records.

A change that alters the train state's shapes (``model.width``) or the run's meaning (the
quantizer, the learning rate, the length of training) is refused with the differing keys
named, before any checkpoint is touched. ``config.resume_override = True`` accepts it
deliberately: the change is appended to ``config_changes.jsonl`` and the old ``config.json`` is
kept as ``config.<n>.json`` beside the new one, so nothing recorded is overwritten.
"""

from __future__ import annotations

import json
import pathlib
import time

from flax import traverse_util

from bnnlab.runs import CONFIG_FILE, save_config

CHANGES_FILE = "config_changes.jsonl"
# Keys that change how a run is executed or reported, not what it computes.
NEUTRAL = frozenset(
    {
        "progress_bar",
        "data_workers",
        "data_dir",
        "keep_checkpoints",
        "distributed",
        "mesh",
        "resume_override",
        "log_every_steps",
        "checkpoint_every_steps",
        "eval_every_epochs",
    }
)


class ConfigChanged(ValueError):
    """The config differs from the workdir's recorded one in keys that matter."""


def differences(config, workdir) -> dict[str, tuple]:
    """Key → (recorded, now) for every key that matters and differs."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    recorded = traverse_util.flatten_dict(json.loads(path.read_text()), sep=".")
    now = traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep=".")
    keys = (set(recorded) | set(now)) - NEUTRAL
    return {k: (recorded.get(k), now.get(k)) for k in sorted(keys) if recorded.get(k) != now.get(k)}


def check(config, workdir) -> None:
    """Records a new run's config, or checks (and with the override, records) a resumed one."""
    workdir = pathlib.Path(workdir)
    if not (workdir / CONFIG_FILE).exists():
        save_config(config, workdir)
        return
    changed = differences(config, workdir)
    if not changed:
        return
    listed = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in changed.items())
    if not config.get("resume_override", False):
        raise ConfigChanged(
            f"{workdir} holds a run with another config ({listed}). Use another --workdir, or "
            "set --config.resume_override=True to continue this run with the change (recorded "
            f"in {CHANGES_FILE})."
        )
    n = 1 + len(list(workdir.glob("config.*.json")))
    (workdir / CONFIG_FILE).rename(workdir / f"config.{n}.json")
    save_config(config, workdir)
    with (workdir / CHANGES_FILE).open("a") as f:
        record = {"time": time.ctime(), "previous": f"config.{n}.json"}
        record["changes"] = {k: [old, new] for k, (old, new) in changed.items()}
        f.write(json.dumps(record) + "\n")

"""The key check of a reconfigurable run: a keyed check value stored in its workdir and in its
export, so training, resuming, evaluating or exporting with keys other than the run's is
refused instead of silently computing (or training) another model.

    key_check.json = {"derivation": 1, "check": HMAC(root, msg("key-check", user))[:16],
                      "demo_keys": bool}

The check value (``derive.check_value``) is a one-way function of both keys: it confirms a
guess only to someone who already holds the root key and the user key, and such a person can
confirm it on the model itself, so it adds no oracle. ``demo_keys`` records whether the run
was trained with the public demo keys; the demo keys are never accepted for a run that was
not.
"""

from __future__ import annotations

import hmac
import json
import os
import pathlib

from bnnlab.reconfig import derive, keys
from bnnlab.runs import checkpoint, storage

FILE = "key_check.json"


class WrongKeys(ValueError):
    """Keys other than the ones a run or export was made with."""


def record_of(material: keys.KeyMaterial) -> dict:
    return {
        "derivation": derive.VERSION,
        "check": material.check_value(),
        "demo_keys": material.demo,
    }


def verify(record: dict, material: keys.KeyMaterial, what: str) -> None:
    """Raises ``WrongKeys`` unless ``material`` made ``record`` (``what`` names the run)."""
    if record.get("derivation") != derive.VERSION:
        raise WrongKeys(
            f"{what} was made with key derivation {record.get('derivation')!r}; this bnnlab "
            f"computes derivation {derive.VERSION} and cannot run it: retrain."
        )
    if hmac.compare_digest(str(record.get("check")), material.check_value()):
        return
    if material.demo and not record.get("demo_keys"):
        raise WrongKeys(
            f"{what} was trained with its own keys, not the public demo keys "
            f"({material.source}): pass its --user_key_file / {keys.USER_ENV} and "
            f"--device_key_file / {keys.DEVICE_ENV}."
        )
    raise WrongKeys(
        f"The keys given ({material.source}) are not the keys {what} was trained with: "
        "refusing to run it under other keys (they select other permutations and masks, so "
        "training would overwrite the owner's model and evaluation would compute noise)."
    )


def read(workdir: str | os.PathLike) -> dict | None:
    path = pathlib.Path(workdir) / FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WrongKeys(
            f"{path} cannot be read ({e}): the run's keys cannot be checked. Restore it (the "
            "export's manifest holds the same record under key_check)."
        ) from None
    if not isinstance(record, dict):
        raise WrongKeys(f"{path} is not a key record (a JSON object): {record!r}.")
    return record


def check_workdir(workdir: str | os.PathLike, material: keys.KeyMaterial) -> None:
    """Before training: a new workdir records the keys' check; an existing run must have been
    trained with these keys."""
    workdir = pathlib.Path(workdir)
    record = read(workdir)
    if record is not None:
        verify(record, material, f"the run in {workdir}")
        return
    if storage.saved_steps(workdir / checkpoint.DIRECTORY):
        raise WrongKeys(
            f"{workdir} has checkpoints but no {FILE}: it was trained by a bnnlab without key "
            "checks, whose key derivation this version does not compute; retrain it."
        )
    storage.check_writable(workdir, None, 0)
    # Written whole to a temporary file, then linked into place, which fails if another start
    # got there first: that start's record is the one to verify against.
    tmp = workdir / f".{FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record_of(material), indent=1) + "\n")
    try:
        os.link(tmp, workdir / FILE)
    except FileExistsError:
        verify(read(workdir), material, f"the run in {workdir}")
    except OSError:  # a file system without hard links: replace (the lock follows at once)
        os.replace(tmp, workdir / FILE)
    finally:
        tmp.unlink(missing_ok=True)


def check_run(workdir: str | os.PathLike, material: keys.KeyMaterial) -> None:
    """Before evaluating or exporting a trained run."""
    record = read(workdir)
    if record is None:
        raise WrongKeys(
            f"{workdir} has no {FILE}: it was trained by a bnnlab without key checks, whose "
            "key derivation this version does not compute; retrain it."
        )
    verify(record, material, f"the run in {workdir}")

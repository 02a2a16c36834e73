"""The two secrets of a reconfigurable model, read from files or the environment and checked:
a user key and a device root key (docs/reconfigurable.md, "Keys"). What they derive (task
seeds, permutations, masks, the key check) is ``derive``; the demo device is ``puf``.

Rules, each error naming the file or variable it read:
  * device root key: exactly 256 bits (32 raw bytes, or 64 hex characters in a file or in
    ``BNNLAB_DEVICE_KEY``), at least 8 distinct byte values (all-zero and repeated-pattern
    placeholders are refused);
  * user key: at least 16 bytes (a passphrase or ``secrets.token_hex(16)``), not one repeated
    byte;
  * a key file readable by group or others gives a ``KeyFileWarning``;
  * ``python -m bnnlab.reconfig.keys FILE`` writes a fresh 256-bit key (``secrets``, mode 0600).

Keys are inputs at run time only: nothing here writes them anywhere except that command.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import stat
import sys
import warnings

from bnnlab.reconfig import derive, puf

KEY_BYTES = puf.KEY_BYTES
MIN_USER_KEY_BYTES = 16
MIN_DISTINCT_ROOT_BYTES = 8
DEVICE_ENV, USER_ENV = "BNNLAB_DEVICE_KEY", "BNNLAB_USER_KEY"


class KeyFileWarning(UserWarning):
    """A key file other users of the machine can read."""


class BadKey(ValueError):
    """A key that is missing, malformed or too weak (the message names where it came from)."""


def check_user_key(key: bytes, source: str = "the user key") -> bytes:
    if len(key) < MIN_USER_KEY_BYTES:
        raise BadKey(
            f"{source} has {len(key)} bytes; a user key needs at least {MIN_USER_KEY_BYTES} "
            "(a passphrase, or `python -c 'import secrets; print(secrets.token_hex(16))'`)."
        )
    if len(set(key)) == 1:
        raise BadKey(f"{source} is one repeated byte ({key[:1]!r}…): not a key.")
    return key


def check_root_key(key: bytes, source: str = "the device root key") -> bytes:
    if len(key) != KEY_BYTES:
        raise BadKey(f"{source} must be {KEY_BYTES} bytes (256 bits), got {len(key)}.")
    if len(set(key)) < MIN_DISTINCT_ROOT_BYTES:
        raise BadKey(
            f"{source} has only {len(set(key))} distinct byte values (all-zero or a repeated "
            f"pattern); a device key is 256 random bits: `python -m bnnlab.reconfig.keys FILE`."
        )
    return key


def _warn_if_readable(path: pathlib.Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"Key file {path} can be read by other users (mode {stat.filemode(mode)}): "
            f"chmod 600 {path}.",
            KeyFileWarning,
            stacklevel=3,
        )


def _parse_root(text: bytes, raw: bytes, source: str) -> bytes:
    stripped = text.strip()
    if len(stripped) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(stripped.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            if len(raw) != KEY_BYTES:
                raise BadKey(
                    f"{source} has 64 characters but they are not hexadecimal digits."
                ) from None
    if len(raw) == KEY_BYTES:
        return raw
    raise BadKey(
        f"{source} must hold {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex characters "
        f"(got {len(raw)} bytes)."
    )


def read_key_file(path: str | os.PathLike) -> bytes:
    """A 256-bit device key from a file: 32 raw bytes, or 64 hex characters."""
    path = pathlib.Path(path)
    source = f"device key file {path}"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadKey(f"Cannot read {source}: {e.strerror}.") from None
    _warn_if_readable(path)
    return check_root_key(_parse_root(raw, raw, source), source)


def read_user_key_file(path: str | os.PathLike) -> bytes:
    path = pathlib.Path(path)
    source = f"user key file {path}"
    try:
        key = path.read_bytes().strip()
    except OSError as e:
        raise BadKey(f"Cannot read {source}: {e.strerror}.") from None
    _warn_if_readable(path)
    return check_user_key(key, source)


@dataclasses.dataclass(frozen=True)
class KeyMaterial:
    """The two secrets a reconfigurable model needs at run time. Its repr never shows them.
    ``source`` says where they came from (no secret in it); ``demo`` marks the public demo
    keys (or a simulated device), which protect nothing."""

    user_key: bytes = dataclasses.field(repr=False)
    root_key: bytes = dataclasses.field(repr=False)
    source: str = dataclasses.field(default="given in code", compare=False)
    demo: bool = dataclasses.field(default=False, compare=False)

    def __post_init__(self):
        check_user_key(self.user_key)
        check_root_key(self.root_key)

    def seed(self, task_id: str) -> bytes:
        return derive.task_seed(self.root_key, self.user_key, task_id)

    def model_seed(self) -> bytes:
        return derive.model_seed(self.root_key, self.user_key)

    def check_value(self) -> str:
        return derive.check_value(self.root_key, self.user_key)


DEMO_USER_KEY = b"bnnlab public demo user key"
DEMO_DEVICE_SEED = 20230401  # public: the demo keys protect nothing, they make :runlocal run


def demo_keys() -> KeyMaterial:
    """The public demo keys of the ``:runlocal`` recipes."""
    return KeyMaterial(
        DEMO_USER_KEY,
        puf.demo_device_root_key(DEMO_DEVICE_SEED),
        "the public demo user key and demo device",
        demo=True,
    )


def load(
    user_key_file=None,
    device_key_file=None,
    simulated_device: int | None = None,
    demo: bool = False,
) -> KeyMaterial:
    """Key material from files or the environment (never from the config).

    User key: ``user_key_file`` or the ``BNNLAB_USER_KEY`` environment variable (text).
    Device root key: ``device_key_file`` (256-bit secret), ``BNNLAB_DEVICE_KEY`` (64 hex
    characters), or ``simulated_device`` (a demo: the seed of a simulated SRAM-PUF device).
    ``demo=True`` fills anything missing with the public demo keys (a run records whether it
    was trained with them, and refuses them if it was not: ``reconfig.guard``).
    """
    user = user_source = None
    if user_key_file:
        user, user_source = read_user_key_file(user_key_file), f"user key file {user_key_file}"
    elif os.environ.get(USER_ENV):
        user_source = f"${USER_ENV}"
        user = check_user_key(os.environ[USER_ENV].encode(), user_source)
    root = root_source = None
    is_demo = False
    if device_key_file:
        root, root_source = read_key_file(device_key_file), f"device key file {device_key_file}"
    elif os.environ.get(DEVICE_ENV):
        root_source = f"${DEVICE_ENV}"
        text = os.environ[DEVICE_ENV].encode()
        if len(text.strip()) != 2 * KEY_BYTES:
            raise BadKey(
                f"{root_source} must be {2 * KEY_BYTES} hexadecimal characters (256 bits), "
                f"got {len(text.strip())} characters."
            )
        root = check_root_key(_parse_root(text, b"", root_source), root_source)
    elif simulated_device is not None:
        root = puf.demo_device_root_key(simulated_device)
        root_source, is_demo = f"demo simulated device {simulated_device}", True
    if demo:
        fallback = demo_keys()
        if user is None:
            user, user_source, is_demo = fallback.user_key, "the public demo user key", True
        if root is None:
            root, root_source, is_demo = fallback.root_key, "the public demo device", True
    if user is None or root is None:
        missing = [name for name, v in (("user key", user), ("device root key", root)) if not v]
        raise BadKey(
            f"Missing {' and '.join(missing)}: pass --user_key_file / {USER_ENV} and "
            f"--device_key_file / {DEVICE_ENV} / --simulated_device (or use the recipe's "
            ":runlocal variant, which uses public demo keys)."
        )
    return KeyMaterial(user, root, f"{user_source}; {root_source}", demo=is_demo)


def write_new_key(path: str | os.PathLike) -> pathlib.Path:
    """Writes a fresh 256-bit key (``secrets``) as 64 hex characters, readable by its owner
    only; refuses to overwrite a file."""
    path = pathlib.Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BadKey(f"{path} exists: not overwriting a key file.") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(KEY_BYTES) + "\n")
    return path


def main(argv) -> None:
    if len(argv) < 2 or any(a.startswith("-") for a in argv[1:]):
        print("usage: python -m bnnlab.reconfig.keys FILE [FILE …]  (a new 256-bit key each)")
        sys.exit(2)
    for name in argv[1:]:
        try:
            print(f"wrote a new 256-bit key to {write_new_key(name)} (mode 0600)")
        except BadKey as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)

"""The ``--config`` arguments of ``python -m bnnlab.main``, checked before absl parses them, so
each mistake is one line naming it and its fix (exit status 2) instead of a traceback:

* a config file that does not exist, or that fails to load (its exception, file and line);
* a ``:arg`` the recipe does not know (the recipe's own message, which lists the known ones);
* an override ``--config.a.b=v`` of a field the config does not have (top-level or nested),
  with the closest field names;
* an override whose value does not parse as the field's type.

``--verbose`` skips these checks and lets the underlying error raise with its traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib
import sys
import traceback

USAGE = 2  # the exit status of a command-line mistake (absl's, argparse's)


class ConfigArgError(ValueError):
    """A ``--config`` argument that cannot work (the message says why and what to do)."""


def _config_value(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _overrides(argv: list[str]) -> list[tuple[str, str | None]]:
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith("--config."):
            name, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                value = (
                    argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
                )
            out.append((name, value))
    return out


def load(spec: str):
    """The ConfigDict of ``path[:arg]``, or ``ConfigArgError``."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        known = sorted(p.name for p in pathlib.Path("experiments").glob("*.py"))
        hint = f" Recipes in ./experiments: {', '.join(known)}." if known else ""
        raise ConfigArgError(f"--config: no config file {path!r}.{hint}")
    module_spec = importlib.util.spec_from_file_location("_bnnlab_config_check", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # any error in the user's file is reported as such
        raise ConfigArgError(f"--config: {path} fails to load: {_where(e, file)}") from e
    if not hasattr(module, "get_config"):
        raise ConfigArgError(f"--config: {path} has no get_config() function.")
    try:
        return module.get_config(arg) if arg else module.get_config()
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigArgError(f"--config: {spec}: {e}") from e


def _where(error: Exception, file: pathlib.Path) -> str:
    if isinstance(error, SyntaxError):
        return f"SyntaxError at line {error.lineno}: {error.msg}."
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == str(file)]
    line = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}{line}: {error}"


def _parses(value: str, current) -> bool:
    if isinstance(current, bool):
        return value.lower() in ("true", "false", "1", "0", "yes", "no")
    for kind in (int, float):
        if isinstance(current, kind):
            try:
                float(value) if kind is float else int(value)
            except ValueError:
                return False
    return True


def check_override(config, name: str, value: str | None) -> None:
    node, path = config, []
    for part in name.split("."):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if part not in keys:
            where = ".".join(path) or "the config"
            close = difflib.get_close_matches(part, keys, n=3)
            hint = f" Did you mean {' or '.join(repr('.'.join([*path, c])) for c in close)}?"
            if close:
                rest = hint
            elif keys:
                rest = f" Its fields: {', '.join(sorted(keys))}."
            else:
                rest = " It has none, and the config takes no new fields: set it in the recipe."
            raise ConfigArgError(f"--config.{name}: {where} has no field {part!r}.{rest}")
        node, path = node[part], [*path, part]
    if value is not None and not _parses(value, node):
        raise ConfigArgError(
            f"--config.{name}={value}: {name} is a {type(node).__name__} "
            f"(now {node!r}); {value!r} is not one."
        )


def check(argv: list[str]) -> None:
    """Raises ``ConfigArgError`` for the first unusable ``--config`` argument in ``argv``."""
    spec = _config_value(argv)
    if spec is None:
        return  # absl reports the missing required flag itself
    config = load(spec)
    for name, value in _overrides(argv):
        check_override(config, name, value)


def check_or_exit(argv: list[str]) -> None:
    if "--verbose" in argv:
        return
    try:
        check(argv)
    except ConfigArgError as e:
        print(f"error: {e}", file=sys.stderr)
        print("(--verbose shows the full error)", file=sys.stderr)
        sys.exit(USAGE)

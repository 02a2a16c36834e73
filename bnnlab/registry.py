"""Name → factory registries shared by quantizers and models.

(Datasets are not a registry: ``bnnlab.data.DATASETS`` is a plain name → metadata table.)

Configs name components by strings such as ``"recu"`` or ``"dorefa(k_bit=2, mode='weights')"``
(big_vision's call-string style), so one small parser serves every registry. Only keyword
arguments with literal values are accepted in a call string: a config file stays data, never code.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Splits ``"name(a=1, b='x')"`` into ``("name", {"a": 1, "b": "x"})``.

    Raises:
      ValueError: if the string is not a bare name or a call with literal keyword arguments.
    """
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(
            f"Cannot parse {spec!r}: expected 'name' or 'name(key=value, ...)'."
        ) from e
    if isinstance(node, ast.Name):
        return node.id, {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError(f"Cannot parse {spec!r}: '**' is not allowed in a call string.")
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except ValueError as e:
                raise ValueError(
                    f"Cannot parse {spec!r}: the value of {kw.arg!r} must be a literal "
                    "(number, string, bool, None, tuple, list or dict)."
                ) from e
        return node.func.id, kwargs
    raise ValueError(
        f"Cannot parse {spec!r}: expected 'name' or 'name(key=value, ...)' with keyword "
        "arguments only."
    )


class Registry:
    """A named table of factories with helpful errors for unknown names."""

    def __init__(self, kind: str):
        self._kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator that registers a factory (a class or a function) under ``name``."""

        def decorator(factory):
            if name in self._factories:
                raise ValueError(f"{self._kind} {name!r} is registered twice.")
            self._factories[name] = factory
            return factory

        return decorator

    def available(self) -> list[str]:
        """Sorted list of registered names."""
        return sorted(self._factories)

    def factory(self, name: str) -> Callable[..., Any]:
        """The factory registered under ``name``."""
        if name not in self._factories:
            raise ValueError(
                f"Unknown {self._kind} {name!r}. Available: {', '.join(self.available())}."
            )
        return self._factories[name]

    def get(self, spec: str, **kwargs: Any) -> Any:
        """Builds the component named by ``spec`` (a name or a call string) with ``kwargs``.

        Keyword arguments given here override those in the call string.
        """
        name, spec_kwargs = parse_spec(spec)
        factory = self.factory(name)
        spec_kwargs.update(kwargs)
        try:
            return factory(**spec_kwargs)
        except TypeError as e:
            raise ValueError(f"Bad arguments for {self._kind} {name!r}: {e}") from e

"""Loading the recipes in ``experiments/`` by name, as ``python -m bnnlab.main`` does by path."""

import importlib.util
import pathlib

EXPERIMENTS = pathlib.Path(__file__).parents[1] / "experiments"


def config(name: str, arg: str | None = None, **overrides):
    """``experiments/<name>.py``'s ``get_config(arg)`` with top-level keys overridden
    (``model.<key>`` sets an architecture override)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(arg)
    for key, value in overrides.items():
        if key.startswith("model."):
            c.model[key[len("model.") :]] = value
        else:
            c[key] = value
    return c

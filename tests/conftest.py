"""Test setup: 8 fake CPU devices (set before JAX starts) and a quick hypothesis profile."""

import os

# Must happen before the JAX backend initialises, i.e. before any test imports run jax code.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis

# JAX compiles on first call, so per-example deadlines are meaningless; keep example counts
# modest so the suite stays within its time budget on 2 cores.
hypothesis.settings.register_profile("bnnlab", deadline=None, max_examples=25, derandomize=True)
hypothesis.settings.load_profile("bnnlab")

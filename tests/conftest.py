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

import tempfile  # noqa: E402

import jax  # noqa: E402

# Compile less and reuse compiled programs: many tests build the same small training steps.
jax.config.update("jax_disable_most_optimizations", True)
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="bnnlab-jax-cache-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import pytest  # noqa: E402


@pytest.fixture
def xla_optimizations():
    """Compile with XLA's full optimisation pipeline for one test.

    The suite turns most optimisations off to compile faster, but fusion and LLVM's FMA
    contraction are exactly what recompute a float differently in different places; tests of
    jit-time numerics (SiMaN's code, AdderNet's gradients) must see them.
    """
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", True)


def pytest_sessionfinish(session):
    """Free each worker's compiled programs and arrays while its session is still running.

    After a pytest-xdist worker reports its session finished, execnet gives it 5 s to exit and
    then sends it SIGINT. Left to interpreter exit, freeing hundreds of XLA executables takes
    longer than that, and the SIGINT lands in a garbage-collection callback as a
    KeyboardInterrupt traceback after the summary line.
    """
    del session
    import gc

    jax.clear_caches()
    gc.collect()

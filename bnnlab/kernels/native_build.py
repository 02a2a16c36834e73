"""Compiles bnnlab's C++ kernels (``csrc/*.cc``) on first use, against the XLA FFI headers of
the jaxlib that is installed.

Why at first use and not at install: a build step needs jaxlib's headers, so pip fetched jaxlib
into its isolated build environment on every ``pip install`` (tens of MB, each time), and the
headers it compiled against could come from another jaxlib than the one the program runs
with. Here the headers are always those of the running jaxlib (``jax.ffi.include_dir()``).

The library goes to a cache, ``$BNNLAB_NATIVE_CACHE`` or ``$XDG_CACHE_HOME/bnnlab/native`` or
``~/.cache/bnnlab/native``, under a name that hashes the source, the flags, the compiler and the
jaxlib version: an edited source or another jaxlib gets its own build, and a stale library is
never loaded. Concurrent first uses (pytest-xdist workers, several runs) wait on one file lock
and compile once; the library appears by an atomic rename, whole or not at all.

``python -m bnnlab.kernels.build`` compiles ahead of time (e.g. in a container image)
and prints the library's path, or why it cannot be built.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

SOURCES = pathlib.Path(__file__).with_name("csrc")
# -Wno-return-type: the ISA dispatch's unreachable tails; -Wno-attributes: target attributes
# that an older compiler does not know are dropped with their path, not fatal.
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-Wno-attributes", "-Wno-return-type")
CACHE_ENV = "BNNLAB_NATIVE_CACHE"


class BuildFailed(RuntimeError):
    """The kernel cannot be compiled here; the message says why and what to do."""


def cache_dir() -> pathlib.Path:
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "bnnlab" / "native"


def _compiler() -> str:
    chosen = os.environ.get("CXX")
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise BuildFailed(f"CXX={chosen!r} is not an executable on PATH")
        return found
    found = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if found is None:
        raise BuildFailed("no C++ compiler found (c++, g++ or clang++); install one or set CXX")
    return found


def _include_dir() -> pathlib.Path:
    import jax.ffi

    include = pathlib.Path(jax.ffi.include_dir())
    if not (include / "xla" / "ffi" / "api" / "ffi.h").exists():
        raise BuildFailed(f"jaxlib's XLA FFI headers are not in {include}")
    return include


def library_path(name: str, compiler: str, include: pathlib.Path) -> pathlib.Path:
    """Where the build of ``csrc/{name}.cc`` for this source, compiler and jaxlib lives."""
    import jaxlib

    digest = hashlib.sha256()
    for part in (
        (SOURCES / f"{name}.cc").read_bytes(),
        " ".join(FLAGS).encode(),
        compiler.encode(),
        str(include).encode(),
        jaxlib.__version__.encode(),
    ):
        digest.update(len(part).to_bytes(8, "little") + part)
    return cache_dir() / f"{name}-{digest.hexdigest()[:16]}.so"


def build(name: str) -> pathlib.Path:
    """The path of the compiled ``csrc/{name}.cc``, compiling it first if no build for this
    source, compiler and jaxlib exists; raises ``BuildFailed`` with the reason."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise BuildFailed(f"the native kernels are x86-64 only, this is {platform.machine()}")
    if os.name != "posix":
        raise BuildFailed(f"the native kernels are built on POSIX systems only, this is {os.name}")
    if not (SOURCES / f"{name}.cc").exists():
        known = sorted(p.stem for p in SOURCES.glob("*.cc"))
        raise BuildFailed(f"no kernel source {name!r}; the sources are {known}")
    compiler, include = _compiler(), _include_dir()
    target = library_path(name, compiler, include)
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = open(target.with_suffix(".lock"), "w")
    except OSError as e:
        raise BuildFailed(
            f"cannot write the kernel cache {target.parent} ({e.strerror}); set {CACHE_ENV} "
            "to a writable directory"
        ) from e
    import fcntl

    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be compiling the same build
        if target.exists():
            return target
        logging.info("Compiling bnnlab's native CPU kernel %s (once, a few seconds).", name)
        fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=target.parent)
        os.close(fd)
        command = [compiler, *FLAGS, "-I", str(include), str(SOURCES / f"{name}.cc"), "-o", tmp]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            os.unlink(tmp)
            raise BuildFailed(f"{compiler} failed:\n{done.stderr[-2000:]}")
        os.replace(tmp, target)
    return target

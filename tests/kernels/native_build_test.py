"""The native kernels are compiled on first use into a cache keyed by source and jaxlib: one
build under concurrent first uses, a new build for an edited source, clear reasons when it
cannot build, and an install that needs no jaxlib in pip's build environment."""

import pathlib
import subprocess
import sys

import jaxlib
import pytest

from bnnlab.kernels import native_build

ROOT = pathlib.Path(__file__).parents[2]
needs_compiler = pytest.mark.skipif(
    native_build.platform.machine().lower() not in ("x86_64", "amd64")
    or native_build.shutil.which("c++") is None,
    reason="needs x86-64 and a C++ compiler",
)


def test_the_build_needs_no_jaxlib():
    """pip's isolated build environment fetched jaxlib on every install while the kernel was
    compiled at build time."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert not [r for r in requires if r.startswith(("jax", "jaxlib"))], requires
    assert "compile" not in (ROOT / "setup.py").read_text().split('"""', 2)[2]


@needs_compiler
def test_concurrent_first_uses_compile_once_and_all_load(tmp_path):
    script = (
        "import ctypes, sys; from bnnlab.kernels import native_build as b; "
        "p = b.build('xnor_cpu'); ctypes.CDLL(str(p)); print(p)"
    )
    env = {**native_build.os.environ, native_build.CACHE_ENV: str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    paths = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1
    assert [f.name for f in tmp_path.iterdir() if f.suffix != ".lock"] == [
        pathlib.Path(paths.pop()).name
    ]  # one library, no temporary left behind


def test_an_edited_source_or_another_jaxlib_gets_its_own_build(tmp_path, monkeypatch):
    monkeypatch.setenv(native_build.CACHE_ENV, str(tmp_path / "cache"))
    include = native_build._include_dir()
    first = native_build.library_path("xnor_cpu", "/usr/bin/c++", include)
    assert first.parent == tmp_path / "cache" and first.name.startswith("xnor_cpu-")
    assert native_build.library_path("xnor_cpu", "/usr/bin/c++", include) == first
    assert native_build.library_path("xnor_cpu", "/usr/bin/clang++", include) != first
    with monkeypatch.context() as patched:
        patched.setattr(jaxlib, "__version__", "0.0.0")
        assert native_build.library_path("xnor_cpu", "/usr/bin/c++", include) != first
    edited = tmp_path / "csrc"
    edited.mkdir()
    source = (native_build.SOURCES / "xnor_cpu.cc").read_text()
    (edited / "xnor_cpu.cc").write_text(source + "\n// edited\n")
    monkeypatch.setattr(native_build, "SOURCES", edited)
    assert native_build.library_path("xnor_cpu", "/usr/bin/c++", include) != first


def test_reasons_it_cannot_build(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(native_build.BuildFailed, match=r"CXX='no-such-compiler' is not an exec"):
        native_build.build("xnor_cpu")
    monkeypatch.delenv("CXX")
    with pytest.raises(native_build.BuildFailed, match=r"no kernel source 'xnor'; the sources"):
        native_build.build("xnor")
    monkeypatch.setattr(native_build.platform, "machine", lambda: "aarch64")
    with pytest.raises(native_build.BuildFailed, match="x86-64 only, this is aarch64"):
        native_build.build("xnor_cpu")


@needs_compiler
def test_an_unwritable_cache_names_the_variable(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv(native_build.CACHE_ENV, str(blocked / "cache"))
    with pytest.raises(native_build.BuildFailed, match=r"cannot write the kernel cache .*BNNLAB_"):
        native_build.build("xnor_cpu")


@needs_compiler
def test_a_failed_compile_reports_the_compiler_and_leaves_no_library(tmp_path, monkeypatch):
    monkeypatch.setenv(native_build.CACHE_ENV, str(tmp_path / "cache"))
    broken = tmp_path / "csrc"
    broken.mkdir()
    (broken / "xnor_cpu.cc").write_text("this is not C++\n")
    monkeypatch.setattr(native_build, "SOURCES", broken)
    with pytest.raises(native_build.BuildFailed, match="failed:"):
        native_build.build("xnor_cpu")
    assert [f.name for f in (tmp_path / "cache").iterdir() if f.suffix != ".lock"] == []


def test_the_command_line_prints_the_reason(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bnnlab.kernels.build", "nothing"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: nothing: no kernel source 'nothing'"), done.stderr
    built = subprocess.run(
        [sys.executable, "-m", "bnnlab.kernels.build"],
        capture_output=True,
        text=True,
        env={**native_build.os.environ, native_build.CACHE_ENV: str(tmp_path)},
    )
    if built.returncode == 0:  # x86-64 with a compiler
        assert pathlib.Path(built.stdout.strip()).parent == tmp_path and not built.stderr

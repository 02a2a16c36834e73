"""``python -m bnnlab.kernels.build [NAME ...]``: compiles the native kernels now instead of at
their first use (e.g. while building a container image) and prints each library's path, or
why it cannot be built (exit status 1)."""

import sys

from bnnlab.kernels import native_build


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in native_build.SOURCES.glob("*.cc"))
    for name in names:
        try:
            print(native_build.build(name))
        except native_build.BuildFailed as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

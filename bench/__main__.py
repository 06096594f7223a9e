"""`python -m bench <name> [args]`: run bench.<name>.main(args)."""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench <name> [args]   (e.g. python -m bench api --help)")
        return 0 if argv else 2
    try:
        module = importlib.import_module(f"bench.{argv[0]}")
    except ModuleNotFoundError:
        print(f"no benchmark named {argv[0]!r}", file=sys.stderr)
        return 2
    result: int = module.main(argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

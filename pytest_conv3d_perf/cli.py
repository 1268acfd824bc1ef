"""The conv3d-perf command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("not yet")  # replaced below


if __name__ == "__main__":
    sys.exit(main())

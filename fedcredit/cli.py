"""The ``fedcredit`` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fedcredit", description=__doc__)
    ap.add_subparsers(dest="command")
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

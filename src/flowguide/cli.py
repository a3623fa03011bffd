"""The one command-line tool, ``flowguide``: every rule, test and user goes through it.

Each stage registers its subcommands from its own ``cli`` module; heavy imports happen inside
the handlers so that ``flowguide --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Any

from flowguide.utils.failures import FlowguideError

STAGE_CLIS = [
    "flowguide.data.cli",
    "flowguide.segment.cli",
    "flowguide.select.cli",
    "flowguide.inspect.cli",
    "flowguide.flow.cli",
    "flowguide.train.cli",
    "flowguide.evaluate.cli",
    "flowguide.explain.cli",
    "flowguide.report.cli",
]


def json_options(text: str) -> dict[str, Any]:
    """``--options`` value: a JSON object (the rule passes its config section)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--options is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--options must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowguide", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in STAGE_CLIS:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except FlowguideError as exc:
        print(f"flowguide {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

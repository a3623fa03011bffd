"""The one command-line tool, ``flowguide``: every rule, test and user goes through it.

Each stage registers its subcommands from its own ``cli`` module; heavy imports happen inside
the handlers so that ``flowguide --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
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


DESCRIPTION = """\
Athlete masks from optical flow, and explanation-guided training of video action recognition.
The Snakemake workflow (`snakemake --cores all`) runs these commands for you; use them directly
to look at results (`flowguide inspect results/masks/train0000.h5`) or to run one stage by hand.
`flowguide <command> --help` describes each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowguide",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
        return code
    except FlowguideError as exc:
        print(f"flowguide {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`flowguide inspect ... | head`): stop quietly like other Unix
        # tools; output still buffered must not raise again when Python flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe stopped


if __name__ == "__main__":
    sys.exit(main())

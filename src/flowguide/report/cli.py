"""``flowguide report``: results/report/ (index.html, report.md, figures/, tables/*.csv)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("report", help="build the HTML/Markdown report from results/")
    p.add_argument(
        "--results", required=True, help="results folder (reads eval/, masks/, failures/)"
    )
    p.add_argument("--out", required=True, help="output folder, e.g. results/report")
    p.add_argument("--options", type=json_options, default={}, help="config 'report' section")
    p.add_argument(
        "--pool",
        nargs="*",
        default=[],
        help="more results folders (other SynthDive data seeds) pooled into the summary",
    )
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from flowguide.report.build import build_report

    options = dict(args.options)
    if args.pool:
        options["pool"] = list(options.get("pool", [])) + list(args.pool)
    report = build_report(args.results, args.out, options)
    missing = sum(len(s.missing) for s in report.sections)
    if "compute_time" in report.tables_written:  # the measured cost, for the closing note
        import pandas as pd

        for row in pd.read_csv(report.tables_written["compute_time"]).itertuples():
            elapsed = "" if pd.isna(row.elapsed_s) else f" elapsed_s {row.elapsed_s:.0f}"
            print(
                f"time {row.stage}: jobs {row.jobs} wall_s {row.wall_s:.0f} "
                f"cpu_s {row.cpu_s:.0f}{elapsed}"
            )
    print(
        f"report: {args.out}/index.html: {len(report.tables_written)} tables, "
        f"{len(report.figures_written)} figures, {missing} missing items"
    )
    return 0

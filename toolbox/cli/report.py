"""deepvis report: rebuild an analysed video's HTML report from its files."""
from __future__ import annotations

import argparse


def cmd_report(args) -> int:
    from toolbox.jobs.report import build_report

    print(f"wrote {build_report(args.folder)}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="rebuild report.html from the files deepvis analyze wrote "
                              "(no new analysis)")
    p.add_argument("folder", help="an analyze --out folder (one video)")
    p.set_defaults(run=cmd_report)

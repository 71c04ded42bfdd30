"""The ``workbench report`` command: compare models on one data file and write an HTML (and PDF) report.

:func:`add_command` registers it on the parser that :mod:`workbench.cli`
builds. Its errors go through the same one-line ``error:`` handling.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.cli import CLIError, _positive_int
from workbench.cohorts import Cohort, parse_cohort
from workbench.explain import method_names
from workbench.explain.game import GAME_BASELINES
from workbench.model_comparison import default_group_field, load_models
from workbench.report import chromium_path, write_html, write_pdf, write_tables
from workbench.report_builder import default_report

AUTO_GROUP = "auto"
NO_GROUP = "none"


def add_command(commands: Any) -> None:
    """Add the report command to the ``workbench`` sub-command parser."""
    report = commands.add_parser(
        "report",
        help="compare models on one data file and write a standalone HTML report (and a PDF)",
        description=(
            "Load each bundle, read DATA with its schema and build the default report: the models, metrics and "
            "calibration, field importance, pair interactions (models with at most 16 fields), probes where the "
            "architecture has them, and the first model compared with each other one (attribution agreement, "
            "interaction difference, largest prediction gaps). The HTML file works offline; every figure has a "
            "provenance block."
        ),
    )
    report.add_argument("--models", nargs="+", required=True, type=Path, metavar="BUNDLE", help="bundle folders (one or more)")
    report.add_argument("--data", required=True, type=Path, help="data file (Parquet, CSV or libfm) all models read")
    report.add_argument("--out", required=True, type=Path, help="HTML file to write")
    report.add_argument("--pdf", action="store_true", help="also print the report to OUT with .pdf, with headless Chromium")
    report.add_argument("--tables", type=Path, help="also write every section's tables and provenance.json into this folder")
    report.add_argument("--table-format", choices=("parquet", "csv"), default="parquet", help="format of --tables (default: parquet)")
    report.add_argument(
        "--cohort",
        help=(
            "cohort as JSON text, the path of a JSON file, or FILE#NAME to pick one cohort from a file of several "
            "(such as the app's cohort download); see docs/reports.md"
        ),
    )
    report.add_argument("--max-rows", type=_positive_int, help="read at most this many rows of DATA (default: all)")
    report.add_argument(
        "--rows", type=_positive_int, default=200, help="rows every model explains, drawn at random (default: 200)"
    )
    report.add_argument(
        "--interaction-rows",
        type=_positive_int,
        default=50,
        help="of those, rows for the exact pair maps, which cost 2**fields model calls each (default: 50)",
    )
    report.add_argument(
        "--method", choices=method_names(include_auto=True), default="auto", help="attribution method (default: auto, exact Shapley up to 16 fields)"
    )
    report.add_argument("--baseline", choices=list(GAME_BASELINES), default="zero", help="baseline of absent fields (default: zero)")
    report.add_argument(
        "--group-field",
        default=AUTO_GROUP,
        help="column that groups rows for gAUC: 'auto' (a user field such as user_id; the default), 'none', or a column name",
    )
    report.add_argument("--seed", type=int, default=0, help="seed of the explained rows (default: 0)")
    report.add_argument("--title", help="report title (default: 'Model comparison', or 'Model report' for one model)")
    report.add_argument("--overwrite", action="store_true", help="replace existing output files")
    report.set_defaults(handler=run_report)


def _check_outputs(args: argparse.Namespace) -> Path | None:
    if args.out.suffix.lower() not in (".html", ".htm"):
        msg = f"--out must end in .html; got {str(args.out)!r}"
        raise CLIError(msg)
    pdf = args.out.with_suffix(".pdf") if args.pdf else None
    for path in (args.out, pdf):
        if path is not None and path.exists() and not args.overwrite:
            msg = f"{str(path)!r} already exists; choose another --out or pass --overwrite"
            raise CLIError(msg)
    if pdf is not None and chromium_path() is None:
        msg = (
            "--pdf needs Chromium, which was not found (install it with `apt-get install chromium`, or set "
            "WORKBENCH_CHROMIUM to its path); the HTML report works without it, so run again without --pdf"
        )
        raise CLIError(msg)
    return pdf


def run_report(args: argparse.Namespace) -> int:
    pdf = _check_outputs(args)
    cohort = parse_cohort(args.cohort) if args.cohort else Cohort()
    models = load_models(args.models, args.data, max_rows=args.max_rows, cohort=cohort)
    if args.group_field == AUTO_GROUP:
        group_field = default_group_field(models)
    else:
        group_field = None if args.group_field == NO_GROUP else args.group_field

    def say(step: str) -> None:
        print(f"report: {step}", file=sys.stderr)

    report = default_report(
        models,
        cohort=cohort,
        title=args.title or ("Model comparison" if len(models) > 1 else "Model report"),
        explain_rows=args.rows,
        interaction_rows=args.interaction_rows,
        seed=args.seed,
        method=args.method,
        baseline=args.baseline,
        group_field=group_field,
        progress=say,
    )
    written = {"html": str(write_html(report, args.out, overwrite=args.overwrite))}
    if pdf is not None:
        say("printing the PDF with Chromium")
        written["pdf"] = str(write_pdf(report, pdf, overwrite=args.overwrite))
    if args.tables is not None:
        files = write_tables(report, args.tables, format=args.table_format, overwrite=args.overwrite)
        written["tables"] = str(args.tables)
        written["table_files"] = len(files)
    summary = {
        "sections": [section.title for section in report.sections],
        "rows": len(models[0].dataset),
        "cohort": cohort.name,
        "written": written,
    }
    print(json.dumps(summary, indent=2))
    return 0

"""Frappe with and without the item text vector: paired training runs and their AUC difference.

Steps:

1. Write the Frappe splits with the dense ``item_text`` field (Parquet files,
   ``schema.json``) into ``runs/frappe_text/data_<method>`` with
   ``workbench.text_vectors.write_frappe_text_splits``, unless that folder
   already has them. Next to it goes ``schema_without_text.json``: the same ten
   categorical fields without ``item_text``.
2. For every architecture and seed, run ``workbench train`` twice on the same
   Parquet files: once with ``schema.json`` (with the vector) and once with
   ``schema_without_text.json`` (without). The other options are those of
   bench/frappe_train.sh. Bundles go to
   ``runs/frappe_text/<arch>_<method>_with_s<seed>`` and
   ``runs/frappe_text/<arch>_without_s<seed>``; a bundle that
   already exists is reused unless ``--retrain`` is given.
3. Print a Markdown table of validation and test AUC and log loss per run, and
   per architecture the mean and sample standard deviation over seeds of the
   paired difference (with minus without).

Usage:
    python bench/frappe_text.py [--method minilm|tfidf] [--archs deepfm dcnv2] [--seeds 2024 2025 2026]

FRAPPE_DIR overrides the data folder (default: ../shared/data/frappe). The
Frappe licence forbids redistribution, so everything is written under the
gitignored runs/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.data import DataError  # noqa: E402 (after the path set-up)
from workbench.text_vectors import SUMMARY_NAME, TEXT_METHODS, write_frappe_text_splits  # noqa: E402

# The options of bench/frappe_train.sh for the architectures compared here.
OPTIONS = {
    "deepfm": ["--embedding-regularizer", "0.1"],
    "dcnv2": ["--embedding-regularizer", "0.05"],
}
VARIANTS = ("with", "without")


def build_data(frappe_dir: Path, data_dir: Path, method: str, dim: int | None) -> dict:
    """Write the splits unless they exist, and return the summary of ``write_frappe_text_splits``."""
    summary_path = data_dir / SUMMARY_NAME
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary["method"] == method and (dim is None or summary["dim"] == dim):
            print(f"reusing {data_dir}", file=sys.stderr)
            return summary
    start = time.perf_counter()
    summary = write_frappe_text_splits(frappe_dir, data_dir, method=method, dim=dim, overwrite=True)
    print(f"wrote {data_dir} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    schema = json.loads((data_dir / "schema.json").read_text(encoding="utf-8"))
    schema["fields"] = [field for field in schema["fields"] if field["kind"] != "dense"]
    (data_dir / "schema_without_text.json").write_text(json.dumps(schema, indent=1), encoding="utf-8")
    return summary


def train_one(data_dir: Path, bundle: Path, arch: str, variant: str, seed: int, *, retrain: bool) -> dict:
    """Train one bundle through the CLI at nice 10 unless it exists, and return its manifest."""
    manifest_path = bundle / "manifest.json"
    if manifest_path.is_file() and not retrain:
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    schema = data_dir / ("schema.json" if variant == "with" else "schema_without_text.json")
    command = [
        "nice", "-n", "10", str(ROOT / ".venv" / "bin" / "workbench"), "train", "--arch", arch,
        "--train", str(data_dir / "train.parquet"),
        "--valid", str(data_dir / "valid.parquet"),
        "--test", str(data_dir / "test.parquet"),
        "--schema", str(schema),
        "--out", str(bundle), "--overwrite", "--quiet",
        "--name", f"{arch} {variant} item_text · Frappe · seed {seed}",
        "--seed", str(seed), *OPTIONS[arch],
    ]  # fmt: skip
    print(f"== {bundle.name}", file=sys.stderr)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"   {time.perf_counter() - start:.0f} s wall", file=sys.stderr)
    return json.loads(manifest_path.read_text(encoding="utf-8"))


def run_row(arch: str, variant: str, seed: int, manifest: dict) -> dict:
    """Flatten one manifest into the metrics of the table."""
    metrics, training = manifest["metrics"], manifest["training"]
    return {
        "arch": arch,
        "variant": variant,
        "seed": seed,
        "valid_auc": metrics["valid"]["auc"],
        "valid_logloss": metrics["valid"]["logloss"],
        "test_auc": metrics["test"]["auc"],
        "test_logloss": metrics["test"]["logloss"],
        "best_epoch": training["best_epoch"],
        "epochs": len(training["history"]),
        "seconds": training["seconds"],
    }


def print_tables(rows: list[dict]) -> None:
    """Print the per-run table and the paired differences per architecture."""
    print("| model | item_text | seed | valid AUC | valid logloss | test AUC | test logloss | best epoch / run | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['arch']} | {row['variant']} | {row['seed']} | {row['valid_auc']:.4f} | {row['valid_logloss']:.4f} "
            f"| {row['test_auc']:.4f} | {row['test_logloss']:.4f} | {row['best_epoch']} / {row['epochs']} "
            f"| {row['seconds']:.0f} |"
        )
    print()
    print("| model | seeds | Δ valid AUC | Δ test AUC | Δ valid logloss | Δ test logloss |")
    print("|---|---|---|---|---|---|")
    for arch in dict.fromkeys(row["arch"] for row in rows):
        paired = {}
        for row in rows:
            if row["arch"] == arch:
                paired.setdefault(row["seed"], {})[row["variant"]] = row
        seeds = [seed for seed, pair in paired.items() if set(pair) == set(VARIANTS)]
        cells = []
        for key in ("valid_auc", "test_auc", "valid_logloss", "test_logloss"):
            deltas = [paired[seed]["with"][key] - paired[seed]["without"][key] for seed in seeds]
            cells.append(format_deltas(deltas))
        print(f"| {arch} | {', '.join(map(str, seeds))} | {' | '.join(cells)} |")


def format_deltas(deltas: list[float]) -> str:
    """Format paired differences as mean ± sample standard deviation, plus the values."""
    if not deltas:
        return "–"
    mean = statistics.fmean(deltas)
    spread = f" ± {statistics.stdev(deltas):.4f}" if len(deltas) > 1 else ""
    values = ", ".join(f"{delta:+.4f}" for delta in deltas)
    return f"{mean:+.4f}{spread} ({values})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=TEXT_METHODS, default="minilm", help="text embedding method (default: minilm)")
    parser.add_argument("--dim", type=int, help="vector length for tfidf (default: 32); minilm is always 384")
    parser.add_argument("--archs", nargs="+", choices=sorted(OPTIONS), default=["deepfm"], help="architectures (default: deepfm)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2024], help="training seeds (default: 2024)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="with and/or without item_text")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "frappe_text", help="output folder (default: runs/frappe_text)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a bundle exists")
    args = parser.parse_args()

    frappe_dir = Path(os.environ.get("FRAPPE_DIR", ROOT.parent / "shared" / "data" / "frappe"))
    data_dir = args.out / f"data_{args.method}"
    try:
        summary = build_data(frappe_dir, data_dir, args.method, args.dim)
    except DataError as err:
        raise SystemExit(f"error: {err}") from None
    splits = ", ".join(
        f"{split}: {info['items_without_text']} of {info['items']} items, {info['rows_without_text']:,} of {info['rows']:,} rows"
        for split, info in summary["splits"].items()
    )
    print(f"item_text: {summary['method']}, dim {summary['dim']}. Without text: {splits}", file=sys.stderr)

    rows = []
    for arch in args.archs:
        for seed in args.seeds:
            for variant in args.variants:
                # Runs without the vector read the same categorical columns from
                # either data folder, so they are shared between methods.
                tag = f"{args.method}_with" if variant == "with" else "without"
                bundle = args.out / f"{arch}_{tag}_s{seed}"
                manifest = train_one(data_dir, bundle, arch, variant, seed, retrain=args.retrain)
                rows.append(run_row(arch, variant, seed, manifest))
    print_tables(rows)


if __name__ == "__main__":
    main()

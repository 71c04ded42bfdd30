"""The ``workbench`` command: train, evaluate, explain and serve.

Errors a user can fix (missing files, bad schemas, inconsistent bundles, bad
options) print one ``error:`` line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bundle import BundleError, json_safe, load_bundle, save_bundle
from workbench.data import (
    DataError,
    data_format,
    encode,
    file_fingerprint,
    infer_schema_spec,
    load_dataset,
    read_frame,
    read_schema_spec,
)
from workbench.schema import Field, Schema, SchemaError, fit_schema
from workbench.zoo import ARCHITECTURES, build_model

REPO_ROOT = Path(__file__).resolve().parent.parent
USER_ERRORS = (BundleError, DataError, SchemaError, ValueError, KeyError, IndexError, FileNotFoundError)


class CLIError(ValueError):
    """A usage error reported as one line."""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        msg = f"expected comma-separated integers such as 400,400,400; got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if any(v < 1 for v in values):
        msg = f"layer sizes must be >= 1; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a whole number; got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"expected a number >= 1; got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"expected a number; got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not value >= 0:
        msg = f"expected a number >= 0; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="CTR Workbench: train, evaluate and explain click-through-rate models, or start the app.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a native model and save it as a bundle folder",
        description=(
            "Train a native model with early stopping on validation AUC and write a bundle "
            "(manifest.json + weights.safetensors). Data files: .csv, .tsv, .parquet or .libfm, "
            "optionally gzip-compressed (.gz)."
        ),
    )
    train.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES), help="model architecture")
    train.add_argument("--train", required=True, type=Path, help="training data file")
    train.add_argument("--valid", required=True, type=Path, help="validation data file (early stopping)")
    train.add_argument("--test", type=Path, help="test data file; its metrics are stored in the bundle")
    train.add_argument("--out", required=True, type=Path, help="bundle folder to create")
    train.add_argument("--overwrite", action="store_true", help="replace --out if it already exists")
    train.add_argument(
        "--schema",
        type=Path,
        help=(
            "schema spec JSON ({'label': ..., 'fields': [{'name', 'kind'}, ...]}); default: schema.json next "
            "to the training file, else every libfm field is categorical, else kinds are guessed from the columns"
        ),
    )
    train.add_argument(
        "--feature-map", type=Path, help="libfm feature map TSV (index, field, raw_value); default: feature_map.tsv next to the file"
    )
    train.add_argument("--label", default="label", help="label column of CSV/Parquet files without a schema (default: label)")
    train.add_argument("--max-rows", type=_positive_int, help="read at most this many rows of each file (default: all)")
    train.add_argument("--name", help="model name shown in the app (default: the --out folder name)")
    model_group = train.add_argument_group("model hyper-parameters")
    model_group.add_argument("--embedding-dim", type=_positive_int, default=10, help="embedding size per field (default: 10)")
    model_group.add_argument(
        "--hidden-units", type=_int_list, default=[400, 400, 400], help="DNN layer sizes, comma-separated (default: 400,400,400)"
    )
    model_group.add_argument("--dropout", type=_non_negative_float, default=0.2, help="DNN dropout probability (default: 0.2)")
    model_group.add_argument(
        "--batch-norm", action=argparse.BooleanOptionalAction, default=True, help="batch normalisation in the DNN (default: on)"
    )
    model_group.add_argument("--cross-layers", type=_positive_int, default=3, help="DCNv2 cross layers (default: 3)")
    model_group.add_argument(
        "--structure", choices=["parallel", "stacked"], default="parallel", help="DCNv2 cross/DNN layout (default: parallel)"
    )
    model_group.add_argument("--attention-layers", type=_positive_int, default=2, help="AutoInt+ attention layers (default: 2)")
    model_group.add_argument("--heads", type=_positive_int, default=2, help="AutoInt+ attention heads (default: 2)")
    model_group.add_argument(
        "--attention-dim", type=_positive_int, default=40, help="AutoInt+ attention width over all heads (default: 40)"
    )
    fit_group = train.add_argument_group("optimisation")
    fit_group.add_argument("--epochs", type=_positive_int, default=30, help="maximum passes over the training data (default: 30)")
    fit_group.add_argument("--batch-size", type=_positive_int, default=4096, help="rows per optimisation step (default: 4096)")
    fit_group.add_argument("--learning-rate", type=_non_negative_float, default=1e-3, help="initial Adam learning rate (default: 0.001)")
    fit_group.add_argument(
        "--embedding-regularizer", type=_non_negative_float, default=1e-3, help="L2 coefficient on embedding tables (default: 0.001)"
    )
    fit_group.add_argument("--net-regularizer", type=_non_negative_float, default=0.0, help="L2 coefficient on other weights (default: 0)")
    fit_group.add_argument(
        "--patience", type=_positive_int, default=2, help="epochs without a better validation AUC before stopping (default: 2)"
    )
    fit_group.add_argument("--seed", type=int, default=2024, help="random seed (default: 2024)")
    fit_group.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=run_train)

    evaluate_cmd = commands.add_parser(
        "evaluate", help="print AUC and log loss of a bundle on a data file (JSON)",
        description="Score a data file with a bundle and print AUC, log loss (natural log), rows and positive rate as JSON.",
    )
    evaluate_cmd.add_argument("bundle", type=Path, help="bundle folder")
    evaluate_cmd.add_argument("data", type=Path, help="data file with the bundle's fields and label")
    evaluate_cmd.add_argument("--feature-map", type=Path, help="libfm feature map TSV (default: feature_map.tsv next to the file)")
    evaluate_cmd.add_argument("--max-rows", type=_positive_int, help="score at most this many rows (default: all)")
    evaluate_cmd.set_defaults(handler=run_evaluate)

    explain = commands.add_parser(
        "explain", help="write field attributions of a bundle on a data file to Parquet",
        description=(
            "Attribute predictions to fields with Integrated Gradients on the field embeddings (logit units) and "
            "write one line per (row, field) to Parquet: row, field, raw_value, attribution, base_value, prediction, "
            "label, method, baseline, output_space."
        ),
    )
    explain.add_argument("bundle", type=Path, help="bundle folder")
    explain.add_argument("data", type=Path, help="data file with the bundle's fields and label")
    explain.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    explain.add_argument("--overwrite", action="store_true", help="replace --out if it already exists")
    explain.add_argument("--rows", type=_positive_int, default=1000, help="explain the first N rows (default: 1000)")
    explain.add_argument("--row-ids", type=_int_list_any, help="explain these 0-based rows instead, comma-separated")
    explain.add_argument("--baseline", choices=["zero", "oov"], default="zero", help="reference input (default: zero embedding)")
    explain.add_argument("--n-steps", type=_positive_int, default=50, help="integration points per sample (default: 50)")
    explain.add_argument("--batch-size", type=_positive_int, default=128, help="samples per batch (default: 128)")
    explain.add_argument("--feature-map", type=Path, help="libfm feature map TSV (default: feature_map.tsv next to the file)")
    explain.set_defaults(handler=run_explain)

    serve = commands.add_parser(
        "serve", help="start the Streamlit app", description="Start the workbench app with streamlit on this machine."
    )
    serve.add_argument("--port", type=_positive_int, default=8501, help="TCP port (default: 8501)")
    serve.add_argument("--address", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--models", type=Path, help="folder of bundles to list (default: models/ of the repository)")
    serve.add_argument("--data", type=Path, help="folder of data files to list (default: sample_data/ of the repository)")
    serve.set_defaults(handler=run_serve)
    return parser


def _int_list_any(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        msg = f"expected comma-separated row numbers such as 0,5,17; got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values or any(v < 0 for v in values):
        msg = f"row numbers must be >= 0; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def resolve_schema_spec(args: argparse.Namespace, frame_columns: list[str]) -> Schema | None:
    """Pick the schema spec for training: --schema, schema.json next to the data, or None (infer)."""
    if args.schema is not None:
        return read_schema_spec(args.schema)
    candidate = args.train.parent / "schema.json"
    if candidate.is_file():
        return read_schema_spec(candidate)
    if data_format(args.train) == "libfm":
        return Schema([Field(name, "categorical") for name in frame_columns if name != "label"], label="label")
    return None


def _data_record(path: Path, n_rows: int) -> dict[str, Any]:
    return {"path": str(path.resolve()), "sha256": file_fingerprint(path), "rows": n_rows}


def run_train(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        msg = f"{str(args.out)!r} already exists; choose another --out or pass --overwrite"
        raise CLIError(msg)
    from workbench.training import TrainConfig, evaluate, train

    read = {"feature_map": args.feature_map, "max_rows": args.max_rows}
    train_frame = read_frame(args.train, label=args.label, **read)
    spec = resolve_schema_spec(args, list(train_frame.columns))
    if spec is None:
        spec = infer_schema_spec(train_frame, args.label)
    schema = fit_schema(train_frame, spec)
    sets = {"train": encode(train_frame, schema, name=args.train.name, source=str(args.train))}
    paths = {"train": args.train, "valid": args.valid}
    if args.test is not None:
        paths["test"] = args.test
    for split in ("valid", "test"):
        if split in paths:
            frame = read_frame(paths[split], label=spec.label, **read)
            sets[split] = encode(frame, schema, name=paths[split].name, source=str(paths[split]))

    hyperparameters: dict[str, Any] = {"embedding_dim": args.embedding_dim}
    if args.arch in ("deepfm", "dcnv2", "autoint+"):
        hyperparameters.update(hidden_units=args.hidden_units, dropout=args.dropout, batch_norm=args.batch_norm)
    if args.arch == "dcnv2":
        hyperparameters.update(n_cross_layers=args.cross_layers, structure=args.structure)
    if args.arch == "autoint+":
        hyperparameters.update(attention_layers=args.attention_layers, n_heads=args.heads, attention_dim=args.attention_dim)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        embedding_regularizer=args.embedding_regularizer,
        net_regularizer=args.net_regularizer,
        patience=args.patience,
        seed=args.seed,
    )
    from workbench.training import seed_everything

    seed_everything(args.seed)
    model = build_model(args.arch, schema, **hyperparameters)
    print(
        f"training {args.arch} on {len(sets['train']):,} rows ({len(schema)} fields), "
        f"validating on {len(sets['valid']):,} rows",
        file=sys.stderr,
    )
    result = train(model, sets["train"], sets["valid"], config, show_progress=not args.quiet)
    metrics = {"valid": result.valid_metrics}
    if "test" in sets:
        metrics["test"] = evaluate(model, sets["test"])
    data = {split: _data_record(paths[split], len(sets[split])) for split in paths}
    data["format"] = data_format(args.train)
    if args.feature_map is not None:
        data["feature_map"] = str(args.feature_map.resolve())
    data["oov_counts"] = {split: sets[split].oov_counts for split in sets if split != "train"}
    training = {
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 2),
        "config": result.config,
        "history": result.history,
    }
    save_bundle(model, args.out, name=args.name, metrics=metrics, training=training, data=data, overwrite=args.overwrite)
    print(json.dumps(json_safe({"bundle": str(args.out), "best_epoch": result.best_epoch, "metrics": metrics}), indent=1))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from workbench.training import evaluate

    bundle = load_bundle(args.bundle)
    dataset = load_dataset(args.data, bundle.schema, feature_map=args.feature_map, max_rows=args.max_rows)
    metrics = evaluate(bundle.model, dataset)
    metrics["oov_counts"] = dataset.oov_counts
    print(json.dumps(json_safe({"bundle": str(args.bundle), "data": str(args.data), **metrics}), indent=1))
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from workbench.explain import integrated_gradients

    if args.out.exists() and not args.overwrite:
        msg = f"{str(args.out)!r} already exists; choose another --out or pass --overwrite"
        raise CLIError(msg)
    if args.out.suffix.lower() not in (".parquet", ".pq"):
        msg = f"--out must end in .parquet; got {str(args.out)!r}"
        raise CLIError(msg)
    bundle = load_bundle(args.bundle)
    max_rows = None if args.row_ids else args.rows
    dataset = load_dataset(args.data, bundle.schema, feature_map=args.feature_map, max_rows=max_rows)
    if args.row_ids:
        rows = np.asarray(args.row_ids, dtype=np.int64)
        if rows.max() >= len(dataset):
            msg = f"--row-ids contains {int(rows.max())}, but {str(args.data)!r} has only {len(dataset)} rows (0-based)"
            raise CLIError(msg)
    else:
        rows = np.arange(len(dataset))
    attribution = integrated_gradients(
        bundle.model, dataset, rows, baseline=args.baseline, n_steps=args.n_steps, batch_size=args.batch_size
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    attribution.to_parquet(args.out)
    summary = {
        "out": str(args.out),
        "rows": int(attribution.n_samples),
        "method": attribution.method,
        "baseline": attribution.baseline,
        "output_space": attribution.output_space,
        "completeness_gap_share": attribution.completeness_gap_share,
        "mean_abs_attribution": {k: round(float(v), 6) for k, v in attribution.mean_abs().items()},
    }
    print(json.dumps(json_safe(summary), indent=1))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    app = REPO_ROOT / "app.py"
    if not app.is_file():
        msg = f"app.py not found at {str(app)!r}; run the workbench from a checkout of the repository"
        raise CLIError(msg)
    env = dict(os.environ)
    if args.models is not None:
        env["WORKBENCH_MODELS_DIR"] = str(args.models.resolve())
    if args.data is not None:
        env["WORKBENCH_DATA_DIR"] = str(args.data.resolve())
    command = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", args.address, "--server.port", str(args.port),
        "--browser.gatherUsageStats", "false",
    ]
    print(f"CTR Workbench on http://{args.address}:{args.port}", file=sys.stderr)
    return subprocess.call(command, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except (CLIError, *USER_ERRORS) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``workbench`` command: prepare, train, evaluate, explain, interactions, behaviours, probes and serve.

The what-if commands (counterfactuals, sweep) live in :mod:`workbench.cli_whatif`.

Errors a user can fix (missing files, bad schemas, inconsistent bundles, bad
options) print one ``error:`` line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.app.sources import ALLOWED_ROOTS_ENV
from workbench.adapters.bundle import CODE_FOLDERS_ENV
from workbench.bundle import Bundle, BundleError, json_safe, load_bundle, save_bundle
from workbench.data import (
    FEATURE_MAP_NAME,
    CTRDataset,
    DataError,
    data_format,
    encode,
    file_fingerprint,
    infer_schema_spec,
    load_dataset,
    read_frame,
    read_schema_spec,
)
from workbench.explain import (
    INTERACTION_INDICES,
    INTERACTION_METHODS,
    METHODS,
    background_sample,
    check_method_name,
    explain,
    groups_from_json,
    interactions,
    method_names,
)
from workbench.explain.behaviours import BEHAVIOUR_METHODS, REST_MODES, explain_behaviours
from workbench.explain.exact import TooManyPlayersError
from workbench.explain.game import BACKGROUND_BASELINES, DEFAULT_CHUNK_SIZE, GAME_BASELINES, OUTPUT_SPACES
from workbench.explain.summaries import top_pairs, write_interaction_parquet
from workbench.schema import Field, Schema, SchemaError, fit_schema
from workbench.prepare import DEFAULT_MAX_LENGTH, prepare_movielens, prepare_taobao
from workbench.result_cache import ResultCache, ResultCacheWarning, result_key
from workbench.probes import FIELD_AGGREGATIONS, capture_probes, model_probes
from workbench.zoo import ARCHITECTURES, build_model
from workbench.zoo.registry import accepted_hyperparameters

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BACKGROUND_ROWS = 100
"""Background rows for the mean and expectation baselines when --background-rows is not given."""
USER_ERRORS = (BundleError, DataError, SchemaError, ValueError, KeyError, IndexError, FileNotFoundError)

logger = logging.getLogger(__name__)


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


def _method_name(text: str) -> str:
    """Return a registered method name, else raise an argparse error that gives the reason."""
    try:
        return check_method_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("explain: ")) from None


def _add_explain_inputs(command: argparse.ArgumentParser, *, default_rows: int) -> None:
    """Add the inputs that ``explain`` and ``interactions`` share: files, rows, baseline, players and memory."""
    command.add_argument("bundle", type=Path, help="bundle folder")
    command.add_argument("data", type=Path, help="data file with the bundle's fields and label")
    command.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    command.add_argument("--overwrite", action="store_true", help="replace --out if it already exists")
    command.add_argument("--feature-map", type=Path, help="libfm feature map TSV (default: feature_map.tsv next to the file)")

    command.add_argument(
        "--rows", type=_positive_int, default=default_rows, help=f"explain the first N rows (default: {default_rows})"
    )
    command.add_argument("--row-ids", type=_int_list_any, help="explain these 0-based rows instead, comma-separated")

    command.add_argument(
        "--baseline",
        choices=list(GAME_BASELINES),
        default="zero",
        help=(
            "reference input (default: zero embedding). "
            + "; ".join(f"{name}: {text}" for name, text in GAME_BASELINES.items())
        ),
    )
    command.add_argument(
        "--output-space",
        choices=list(OUTPUT_SPACES),
        default="logit",
        help="unit of the values: logit (log-odds of a click) or probability (CTR, 0 to 1) (default: logit)",
    )
    command.add_argument(
        "--background-rows",
        type=_positive_int,
        help=(
            f"rows drawn at random (seeded by --seed) from the rows read, as background for --baseline mean or "
            f"expectation (default: {DEFAULT_BACKGROUND_ROWS}); expectation multiplies the cost by this number"
        ),
    )
    command.add_argument("--seed", type=int, default=0, help="seed for drawing the background rows (default: 0)")

    command.add_argument(
        "--groups",
        type=Path,
        help=(
            'JSON file mapping group name to a list of fields, such as {"user": ["user_id", "gender"], ...}; each '
            "group acts as one player and every field must be in exactly one group (default: one player per field)"
        ),
    )

    command.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=DEFAULT_CHUNK_SIZE,
        help=(
            f"rows per forward pass of the coalition game; caps memory and does not change the values "
            f"(default: {DEFAULT_CHUNK_SIZE}); not used by integrated_gradients"
        ),
    )
    command.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help=(
            "result cache folder (created when missing): reuse the result stored for the same bundle and data file "
            "bytes and the same options, else compute and store it (default: no cache). Not used with an "
            "unseeded sampled method"
        ),
    )


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
        "--hidden-units", type=_int_list, help="DNN layer sizes, comma-separated (default: the architecture's, 400,400,400 for most); ignored by LR and FM"
    )
    model_group.add_argument("--dropout", type=_non_negative_float, help="DNN dropout probability (default: the architecture's)")
    model_group.add_argument(
        "--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch normalisation in the DNN (default: the architecture's)"
    )
    model_group.add_argument("--cross-layers", type=_positive_int, help="DCNv2 and GDCN cross layers (default: 3)")
    model_group.add_argument(
        "--structure", choices=["parallel", "stacked"], help="DCNv2 and GDCN cross/DNN layout (default: parallel)"
    )
    model_group.add_argument("--attention-layers", type=_positive_int, help="AutoInt+ attention layers (default: 2)")
    model_group.add_argument("--heads", type=_positive_int, help="AutoInt+ attention heads (default: 2)")
    model_group.add_argument("--attention-dim", type=_positive_int, help="AutoInt+ attention width over all heads (default: 40)")
    model_group.add_argument(
        "--param",
        action="append",
        default=[],
        type=_hyperparameter,
        metavar="NAME=VALUE",
        help=(
            "any constructor hyper-parameter of the architecture, repeatable; VALUE is read as JSON "
            "(3, 0.1, true, [400,400], [\"user_id\"]) and otherwise taken as a string, e.g. --param fs1_context='[\"user_id\"]'"
        ),
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
            "Attribute predictions to fields (or field groups) and write one line per (row, field) to Parquet: row, "
            "field, raw_value, attribution, base_value, prediction, label, method, baseline, output_space, and "
            "standard_error for sampled methods. The default method is Integrated Gradients on the field embeddings, "
            "in logit units (log-odds of a click)."
        ),
    )
    _add_explain_inputs(explain, default_rows=1000)
    explain.add_argument(
        "--method",
        type=_method_name,
        metavar="{" + ",".join(method_names(include_auto=True)) + "}",
        default="integrated_gradients",
        help=(
            "attribution method (default: integrated_gradients). auto: exact_shapley up to 16 players. "
            + "; ".join(f"{name}: {entry.summary}" for name, entry in METHODS.items())
        ),
    )
    explain.add_argument(
        "--n-steps",
        type=_positive_int,
        help="integration points per sample (default: 50); integrated_gradients only",
    )
    explain.add_argument(
        "--batch-size",
        type=_positive_int,
        help="samples per backward pass (default: 128); integrated_gradients only",
    )
    _add_sampling_options(explain, "sampled methods (permutation_shapley, kernel_shap, captum_shapley_sampling)")
    explain.set_defaults(handler=run_explain)

    interactions_cmd = commands.add_parser(
        "interactions", help="write pairwise field interactions of a bundle on a data file to Parquet",
        description=(
            "Compute exact pair interaction indices of fields (or field groups) from all 2**n_players coalitions and "
            "write Interaction.to_frame() to Parquet: one line per (row, player) with order 1 and per (row, pair) "
            "with order 2, columns row, player_i, player_j, order, value, index, baseline, output_space. Prints the "
            "pairs with the largest mean |value| as JSON. The cost is rows * 2**n_players forward passes."
        ),
    )
    _add_explain_inputs(interactions_cmd, default_rows=200)
    interactions_cmd.add_argument(
        "--index",
        choices=list(INTERACTION_INDICES),
        default="SII",
        type=str.upper,
        help=(
            "interaction index (default: SII). "
            + "; ".join(f"{name}: {text}" for name, text in INTERACTION_INDICES.items())
        ),
    )
    interactions_cmd.add_argument(
        "--method",
        choices=list(INTERACTION_METHODS),
        default="exact",
        help=(
            "how to compute the index (default: exact). "
            + "; ".join(f"{name}: {entry.summary} (indices: {', '.join(entry.indices)})" for name, entry in INTERACTION_METHODS.items())
        ),
    )
    _add_sampling_options(interactions_cmd, "--method permutation_sii")
    interactions_cmd.add_argument(
        "--top", type=_positive_int, default=10, help="number of pairs to print, by mean |value| (default: 10)"
    )
    interactions_cmd.set_defaults(handler=run_interactions)

    probes_cmd = commands.add_parser(
        "probes",
        help="write a model's gates, masks, attention and pair weights on a data file to Parquet",
        description=(
            "Read the probes the architecture declares (see docs/probes.md) on rows of a data file and write them "
            "to Parquet as one line per (row, leading axes, field or field pair), columns row, probe, kind, layer / "
            "head / block, field (or field_i, field_j) and value. Prints each probe's fields ranked by their mean "
            "value as JSON. One forward pass per row; the predictions are unchanged."
        ),
    )
    _add_row_arguments(probes_cmd, verb="probe", default_rows=1000)
    probes_cmd.add_argument(
        "--probe", action="append", dest="probe_names", metavar="NAME", help="read only this probe, repeatable (default: all)"
    )
    probes_cmd.add_argument(
        "--aggregation",
        choices=list(FIELD_AGGREGATIONS),
        default="mean",
        help="how per-bit gates and masks are combined per field: mean, or mean of absolute values (default: mean)",
    )
    probes_cmd.set_defaults(handler=run_probes)

    behaviours_cmd = commands.add_parser(
        "behaviours",
        help="attribute sequence-model predictions to single past behaviours",
        description=(
            "Write per-behaviour attributions of a sequence model (din, dien, qin) as Parquet: one line per row and "
            "present behaviour with its position (0 = oldest kept), item, attribution and the model's attention "
            "weight. Prints, as JSON, the median rank correlation of |attention| with |attribution| and the largest "
            "completeness gap."
        ),
    )
    _add_row_arguments(behaviours_cmd, verb="explain", default_rows=100)
    behaviours_cmd.add_argument(
        "--method", choices=list(BEHAVIOUR_METHODS), default="auto", help="attribution method (default: auto)"
    )
    behaviours_cmd.add_argument(
        "--rest", choices=list(REST_MODES), default="grouped",
        help="the other fields as one player (grouped) or one player each (fields) (default: grouped)",
    )
    behaviours_cmd.add_argument(
        "--baseline",
        choices=[name for name in GAME_BASELINES if name not in BACKGROUND_BASELINES],
        default="zero",
        help="what absent fields take; absent behaviours always leave the history (default: zero)",
    )
    behaviours_cmd.add_argument("--random-state", type=int, default=0, help="seed of permutation sampling (default: 0)")
    behaviours_cmd.set_defaults(handler=run_behaviours)

    prepare = commands.add_parser(
        "prepare",
        help="build a behaviour-sequence CTR data set (Parquet splits + schema.json) from raw files",
        description=(
            "Turn raw behaviour-sequence data into train.parquet, valid.parquet, test.parquet, schema.json and "
            "PREPARED.md in a new folder that `workbench train` reads. docs/sequences.md describes the fields."
        ),
    )
    sources = prepare.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    movielens = sources.add_parser(
        "movielens",
        help="MovieLens-100k ratings as clicks (rating >= 4) with each user's earlier movies as history",
        description=(
            "One row per rating, label click = rating >= 4, history of the user's movies rated at a strictly "
            "earlier timestamp (most recent last). Split 80/10/10 by time."
        ),
    )
    movielens.add_argument(
        "--source", required=True, type=Path, help="folder with the RecBole files ml-100k.inter, ml-100k.user, ml-100k.item"
    )
    movielens.add_argument(
        "--max-length",
        default=str(DEFAULT_MAX_LENGTH),
        help=f"most recent history items kept per row, a whole number >= 1 (default: {DEFAULT_MAX_LENGTH})",
    )
    taobao = sources.add_parser(
        "taobao",
        help="the Alimama DMR sample (PaddleRec layout, 267 columns) with category, brand and behaviour histories",
        description=(
            "Read the PaddleRec DMR sample file (comma-separated, 267 columns, 50-step histories with a mask). "
            "Split 80/10/10 by file order."
        ),
    )
    taobao.add_argument("--source", required=True, type=Path, help="the DMR sample text file")
    for command in (movielens, taobao):
        command.add_argument("--out", required=True, type=Path, help="folder to create")
        command.add_argument(
            "--overwrite", action="store_true", help="replace --out if it is a folder from an earlier workbench prepare"
        )
    prepare.set_defaults(handler=run_prepare)

    # Imported here because cli_whatif and cli_report import their shared helpers from this module.
    from workbench import cli_whatif

    cli_whatif.add_commands(commands)
    from workbench import cli_report

    cli_report.add_command(commands)
    from workbench import cli_import

    cli_import.register(commands)

    serve = commands.add_parser(
        "serve", help="start the Streamlit app", description="Start the workbench app with streamlit on this machine."
    )
    serve.add_argument("--port", type=_positive_int, default=8501, help="TCP port (default: 8501)")
    serve.add_argument(
        "--address",
        default="127.0.0.1",
        help=(
            "address to listen on (default: 127.0.0.1, this machine only). Another address exposes the app, "
            "which has no login, to the network: see docs/security.md"
        ),
    )
    serve.add_argument(
        "--max-upload-mb", type=_positive_int, default=10, help="largest uploaded file in MB (default: 10)"
    )
    serve.add_argument("--models", type=Path, help="folder of bundles to list (default: models/ of the repository)")
    serve.add_argument("--data", type=Path, help="folder of data files to list (default: sample_data/ of the repository)")
    serve.add_argument(
        "--allow-root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help=(
            "also let the app open bundles and data files under this folder (repeatable). Without it, paths typed "
            "in the app or given in its URL must lie under the working folder, the --models folder or the --data "
            "folder, or a folder listed in WORKBENCH_ALLOWED_ROOTS"
        ),
    )
    serve.add_argument(
        "--model-zoo",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help=(
            "let bundles of FuxiCTR or in-house models import their model classes from this folder (repeatable). "
            "Their code runs in the app, so name only folders you trust; the same as listing them in "
            "WORKBENCH_MODEL_ZOO"
        ),
    )
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
    # The path is kept as given, so bundles trained from a checkout with relative
    # paths (as scripts/build_models.sh does) do not record this machine's folders.
    return {"path": str(path), "sha256": file_fingerprint(path), "rows": n_rows}


# Named options and the constructor keyword each one sets, for the architectures that take it.
NAMED_HYPERPARAMETERS = {
    "hidden_units": "hidden_units",
    "dropout": "dropout",
    "batch_norm": "batch_norm",
    "cross_layers": "n_cross_layers",
    "structure": "structure",
    "attention_layers": "attention_layers",
    "heads": "n_heads",
    "attention_dim": "attention_dim",
}


def _hyperparameter(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        msg = f"expected NAME=VALUE, e.g. n_cross_layers=4; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return name.strip(), parsed


def _train_hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor keywords from the named options the user gave and from ``--param``.

    Named options apply to the architectures that take them and are ignored
    by the others, so one command line serves several architectures (as
    scripts/build_models.sh does). A ``--param`` name the architecture does
    not take is an error, so a typo shows up before training.
    """
    accepted = accepted_hyperparameters(args.arch)
    hyperparameters: dict[str, Any] = {"embedding_dim": args.embedding_dim}
    for option, keyword in NAMED_HYPERPARAMETERS.items():
        value = getattr(args, option)
        if value is not None and keyword in accepted:
            hyperparameters[keyword] = value
    for name, value in args.param:
        if name not in accepted:
            msg = f"--param {name}: {args.arch} has no hyper-parameter {name!r}; accepted: {', '.join(sorted(accepted))}"
            raise CLIError(msg)
        hyperparameters[name] = value
    return hyperparameters


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

    hyperparameters = _train_hyperparameters(args)
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
    metrics: dict[str, Any] = evaluate(bundle.model, dataset)
    metrics["n_rows"] = int(metrics["n_rows"])
    metrics["oov_counts"] = dataset.oov_counts
    print(json.dumps(json_safe({"bundle": str(args.bundle), "data": str(args.data), **metrics}), indent=1))
    return 0


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        msg = f"{str(out)!r} already exists; choose another --out or pass --overwrite"
        raise CLIError(msg)
    if out.suffix.lower() not in (".parquet", ".pq"):
        msg = f"--out must end in .parquet; got {str(out)!r}"
        raise CLIError(msg)


def _read_groups(path: Path | None) -> dict[str, list[str]] | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"--groups file not found: {str(path)!r}"
        raise CLIError(msg) from None
    except (OSError, UnicodeDecodeError) as err:
        msg = f"cannot read the --groups file {str(path)!r}: {err}"
        raise CLIError(msg) from err
    try:
        return groups_from_json(text)
    except ValueError as err:
        msg = f"--groups file {str(path)!r}: {err}"
        raise CLIError(msg) from err


@dataclass
class ExplainInputs:
    """Bundle, data set, rows, field groups and background rows that ``explain`` and ``interactions`` share."""

    bundle: Bundle
    dataset: CTRDataset
    rows: np.ndarray
    players: dict[str, list[str]] | None
    background: dict[str, Any] | None


def _load_explain_inputs(args: argparse.Namespace) -> ExplainInputs:
    """Check the shared options, then load the bundle, the data, the rows, the groups and the background."""
    _check_out(args.out, args.overwrite)
    uses_background = args.baseline in BACKGROUND_BASELINES
    if args.background_rows is not None and not uses_background:
        msg = f"--background-rows is used only with --baseline mean or expectation; got --baseline {args.baseline}"
        raise CLIError(msg)
    players = _read_groups(args.groups)
    bundle = load_bundle(args.bundle)
    max_rows = None if args.row_ids else args.rows
    dataset = load_dataset(args.data, bundle.schema, feature_map=args.feature_map, max_rows=max_rows)
    if len(dataset) == 0:
        msg = f"{str(args.data)!r} has no rows"
        raise CLIError(msg)
    if args.row_ids:
        rows = np.asarray(args.row_ids, dtype=np.int64)
        if rows.max() >= len(dataset):
            msg = f"--row-ids contains {int(rows.max())}, but {str(args.data)!r} has only {len(dataset)} rows (0-based)"
            raise CLIError(msg)
    else:
        rows = np.arange(len(dataset))
    background = None
    if uses_background:
        n_background = args.background_rows or DEFAULT_BACKGROUND_ROWS
        background = background_sample(dataset, n_background, seed=args.seed)
    return ExplainInputs(bundle=bundle, dataset=dataset, rows=rows, players=players, background=background)


def _add_sampling_options(parser: argparse.ArgumentParser, used_by: str) -> None:
    parser.add_argument(
        "--budget",
        type=_positive_int,
        help=f"coalition evaluations per sample (default: the method's own); {used_by} only",
    )
    parser.add_argument(
        "--random-state",
        type=int,
        help=f"seed of the sampled coalitions (default: unseeded); {used_by} only",
    )


def _method_options(args: argparse.Namespace, method: str, accepted: tuple[str, ...] | None, flags: dict[str, str]) -> dict[str, Any]:
    """Collect the method-specific options that were given, rejecting those ``method`` does not take."""
    options: dict[str, Any] = {}
    for flag, name in flags.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if accepted is not None and name not in accepted:
            msg = f"{flag} does not apply to --method {method}; it takes: {', '.join(accepted) or 'no extra options'}"
            raise CLIError(msg)
        options[name] = value
    return options


def _cached(args: argparse.Namespace, inputs: ExplainInputs, kind: str, options: dict[str, Any], compute: Any) -> Any:
    """Return ``compute()``, through the ``--cache`` folder when one is given.

    The key covers the bundle and data file bytes, the libfm feature map when
    one is read, the rows and every option that shapes the values. A sampled
    method without ``--random-state`` is computed every time, because its
    values differ from run to run.
    """
    if args.cache is None:
        return compute()
    if "random_state" in options and options["random_state"] is None:
        logger.warning("--cache is not used: --random-state is not set, so the sampled values differ between runs")
        return compute()
    extra_files = []
    if data_format(args.data) == "libfm":
        feature_map = args.feature_map or args.data.parent / FEATURE_MAP_NAME
        if feature_map.is_file():
            extra_files.append(feature_map)
    parameters = {
        **options,
        "rows": inputs.rows.tolist(),
        "max_rows": None if args.row_ids else args.rows,
        "baseline": args.baseline,
        "output_space": args.output_space,
        "background_rows": None if inputs.background is None else args.background_rows or DEFAULT_BACKGROUND_ROWS,
        "seed": args.seed if inputs.background is not None else None,
        "players": inputs.players,
        "chunk_size": args.chunk_size,
    }
    key = result_key(kind, bundle=args.bundle, data=args.data, parameters=parameters, extra_files=extra_files)
    computed = []

    def compute_and_note() -> Any:
        computed.append(True)
        return compute()

    # The cache logs every problem it finds as well, so its Python warnings would print each one twice.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultCacheWarning)
        value = ResultCache(args.cache).get_or_compute(key, compute_and_note)
    if computed:
        print(f"cache: computed the result and stored it in {str(args.cache)!r}", file=sys.stderr)
    else:
        print(f"cache: read the stored result from {str(args.cache)!r}", file=sys.stderr)
    return value


def run_explain(args: argparse.Namespace) -> int:
    flags = {"--n-steps": "n_steps", "--batch-size": "batch_size", "--budget": "budget", "--random-state": "random_state"}
    if args.method == "auto":
        accepted: tuple[str, ...] | None = ()
    else:
        accepted = METHODS[args.method].options
    method_options = _method_options(args, args.method, accepted, flags)
    inputs = _load_explain_inputs(args)
    sampled = args.method != "auto" and "random_state" in METHODS[args.method].options
    attribution = _cached(
        args,
        inputs,
        "cli.explain",
        {"method": args.method, **method_options, **({"random_state": args.random_state} if sampled else {})},
        lambda: explain(
            inputs.bundle.model,
            inputs.dataset,
            inputs.rows,
            method=args.method,
            baseline=args.baseline,
            players=inputs.players,
            output_space=args.output_space,
            background=inputs.background,
            chunk_size=args.chunk_size,
            **method_options,
        ),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    attribution.to_parquet(args.out)
    summary = {
        "out": str(args.out),
        "rows": int(attribution.n_samples),
        "method": attribution.method,
        "baseline": attribution.baseline,
        "output_space": attribution.output_space,
        "efficient": METHODS[attribution.method].efficient if attribution.method in METHODS else None,
        "completeness_gap_share": attribution.completeness_gap_share,
        "mean_abs_attribution": {k: round(float(v), 6) for k, v in attribution.mean_abs().items()},
    }
    if attribution.standard_errors is not None:
        summary["mean_standard_error"] = float(np.mean(attribution.standard_errors))
    print(json.dumps(json_safe(summary), indent=1))
    return 0


def _significant(value: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits, which keeps small probability-space values readable."""
    return float(f"{float(value):.{digits}g}")


def _add_row_arguments(command: argparse.ArgumentParser, *, verb: str, default_rows: int) -> None:
    """Add the bundle, data, output and row options that the probes and behaviours commands share."""
    command.add_argument("bundle", type=Path, help="bundle folder")
    command.add_argument("data", type=Path, help="data file with the bundle's fields")
    command.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    command.add_argument("--overwrite", action="store_true", help="replace --out if it already exists")
    command.add_argument("--feature-map", type=Path, help="libfm feature map TSV (default: feature_map.tsv next to the file)")
    command.add_argument("--rows", type=_positive_int, default=default_rows, help=f"{verb} the first N rows (default: {default_rows})")
    command.add_argument("--row-ids", type=_int_list_any, help=f"{verb} these 0-based rows instead, comma-separated")


def _note_fewer_rows(requested: int, available: int, path: Path) -> None:
    """Tell the user on stderr when ``--rows`` requests more rows than the file has."""
    if requested > available:
        print(f"note: --rows {requested:,} but {str(path)!r} has {available:,} rows; using all of them", file=sys.stderr)


def _load_rows(
    args: argparse.Namespace, bundle: Bundle, *, whole_file: bool = False
) -> tuple[CTRDataset, np.ndarray]:
    """Read the rows that ``--rows`` or ``--row-ids`` select, with a one-line error for empty data or a bad row.

    With ``whole_file`` every row of the file is read and ``--rows N`` only
    selects the first N, for commands that use the rest of the file as a
    cohort, a grid or background.
    """
    max_rows = None if args.row_ids or whole_file else args.rows
    dataset = load_dataset(args.data, bundle.schema, feature_map=args.feature_map, max_rows=max_rows)
    if len(dataset) == 0:
        msg = f"{str(args.data)!r} has no rows"
        raise CLIError(msg)
    if args.row_ids:
        rows = np.asarray(args.row_ids, dtype=np.int64)
    else:
        _note_fewer_rows(args.rows, len(dataset), args.data)
        rows = np.arange(min(args.rows, len(dataset)))
    if rows.max() >= len(dataset):
        msg = f"--row-ids contains {int(rows.max())}, but {str(args.data)!r} has only {len(dataset)} rows (0-based)"
        raise CLIError(msg)
    return dataset, rows


def run_probes(args: argparse.Namespace) -> int:
    import pandas as pd

    _check_out(args.out, args.overwrite)
    bundle = load_bundle(args.bundle)
    available = [probe.name for probe in model_probes(bundle.model)]
    if not available:
        msg = f"the {bundle.architecture} model in {str(args.bundle)!r} declares no probes; docs/probes.md lists the architectures that do"
        raise CLIError(msg)
    dataset, rows = _load_rows(args, bundle)
    capture = capture_probes(bundle.model, dataset.tensors(rows), names=args.probe_names, aggregation=args.aggregation)

    frame = pd.concat([values.to_frame(rows) for values in capture.probes.values()], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False)
    summary = {"out": str(args.out), "rows": len(rows), "aggregation": args.aggregation, "probes": {}}
    for name, values in capture.probes.items():
        if values.probe.axes == ("position",):
            # Target attention over history positions: the mean weight per position.
            summary["probes"][name] = {
                "kind": values.probe.kind,
                "axes": list(values.probe.axes),
                "per_sample": values.probe.per_sample,
                "mean_by_position": [round(float(v), 6) for v in values.cohort_mean()],
            }
            continue
        if "field" not in values.probe.axes:
            # Signals without a field axis, such as expert gates (layer x expert): the cohort mean as it is.
            summary["probes"][name] = {
                "kind": values.probe.kind,
                "axes": list(values.probe.axes),
                "per_sample": values.probe.per_sample,
                "mean": np.round(np.asarray(values.cohort_mean(), dtype=float), 6).tolist(),
            }
            continue
        strength = values.field_strength()
        order = np.argsort(-strength)
        summary["probes"][name] = {
            "kind": values.probe.kind,
            "axes": list(values.probe.axes),
            "per_sample": values.probe.per_sample,
            "fields_by_mean_value": {values.field_names[i]: round(float(strength[i]), 6) for i in order},
        }
    print(json.dumps(summary, indent=2))
    return 0


def run_behaviours(args: argparse.Namespace) -> int:
    _check_out(args.out, args.overwrite)
    bundle = load_bundle(args.bundle)
    dataset, rows = _load_rows(args, bundle)
    result = explain_behaviours(
        bundle.model, dataset, rows, method=args.method, rest=args.rest, baseline=args.baseline,
        random_state=args.random_state,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.to_frame().to_parquet(args.out, index=False)
    agreement = result.attention_agreement()
    summary = {
        "out": str(args.out),
        "rows": len(rows),
        "method": result.method,
        "behaviours": int(result.present.sum()),
        "median_attention_rank_correlation": None if np.all(np.isnan(agreement)) else round(float(np.nanmedian(agreement)), 4),
        "max_completeness_gap": float(result.completeness_gap.max()),
    }
    print(json.dumps(summary, indent=2))
    return 0


def run_interactions(args: argparse.Namespace) -> int:
    entry = INTERACTION_METHODS[args.method]
    if args.index not in entry.indices:
        msg = f"--method {args.method} computes {', '.join(entry.indices)}; got --index {args.index}"
        raise CLIError(msg)
    method_options = _method_options(args, args.method, entry.options, {"--budget": "budget", "--random-state": "random_state"})
    inputs = _load_explain_inputs(args)
    sampled = "random_state" in entry.options
    interaction = _cached(
        args,
        inputs,
        "cli.interactions",
        {
            "method": args.method,
            "index": args.index,
            **method_options,
            **({"random_state": args.random_state} if sampled else {}),
        },
        lambda: interactions(
            inputs.bundle.model,
            inputs.dataset,
            inputs.rows,
            method=args.method,
            **method_options,
            index=args.index,
            baseline=args.baseline,
            players=inputs.players,
            output_space=args.output_space,
            background=inputs.background,
            chunk_size=args.chunk_size,
        ),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_interaction_parquet(interaction, args.out)
    pairs = top_pairs(interaction, args.top)
    summary = {
        "out": str(args.out),
        "rows": int(interaction.n_samples),
        "index": interaction.index,
        "baseline": interaction.baseline,
        "output_space": interaction.output_space,
        "players": list(interaction.player_names),
        "efficient": interaction.is_efficient,
        "mean_completeness_gap": float(interaction.completeness_gap.mean()),
        "top_pairs": [
            {
                "player_i": pair.player_i,
                "player_j": pair.player_j,
                "mean_abs_value": _significant(pair.mean_abs_value),
                "mean_value": _significant(pair.mean_value),
            }
            for pair in pairs.itertuples(index=False)
        ],
    }
    print(json.dumps(json_safe(summary), indent=1))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    if args.dataset == "movielens":
        try:
            max_length = int(args.max_length)
        except ValueError:
            max_length = 0
        if max_length < 1:
            msg = f"--max-length must be a whole number >= 1; got {args.max_length!r}"
            raise CLIError(msg)
        splits = prepare_movielens(args.source, args.out, max_length=max_length, overwrite=args.overwrite)
    else:
        splits = prepare_taobao(args.source, args.out, overwrite=args.overwrite)
    summary = {
        "out": str(args.out),
        "splits": {
            name: {"rows": len(frame), "clicks": int(frame["click"].sum())} for name, frame in splits.items()
        },
    }
    print(json.dumps(summary, indent=1))
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
    roots = [part for part in env.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if part.strip()]
    for root in args.allow_root:
        if not root.expanduser().is_dir():
            msg = f"--allow-root {str(root)!r} is not an existing folder; give a folder the app may open files under"
            raise CLIError(msg)
        roots.append(str(root.expanduser().resolve()))
    if roots:
        env[ALLOWED_ROOTS_ENV] = os.pathsep.join(roots)
    zoos = [part for part in env.get(CODE_FOLDERS_ENV, "").split(os.pathsep) if part.strip()]
    for zoo in args.model_zoo:
        if not zoo.expanduser().is_dir():
            msg = f"--model-zoo {str(zoo)!r} is not an existing folder; give the folder that holds the model classes"
            raise CLIError(msg)
        zoos.append(str(zoo.expanduser().resolve()))
    if zoos:
        env[CODE_FOLDERS_ENV] = os.pathsep.join(zoos)
    command = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", args.address, "--server.port", str(args.port),
        "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(args.max_upload_mb),
    ]
    print(f"CTR Workbench on http://{args.address}:{args.port}", file=sys.stderr)
    sys.stderr.flush()
    # Replace this process with Streamlit, so that a signal sent to `workbench serve` stops the server too.
    os.execve(sys.executable, command, env)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except TooManyPlayersError as err:
        print(
            f"error: exact methods evaluate all 2**{err.n_players} = {2**err.n_players:,} coalitions per sample for "
            f"{err.n_players} fields, more than the limit of {err.max_players} players; group the fields into at most "
            f"{err.max_players} groups with --groups FILE (a JSON object of group name to field names), or use a "
            "sampled method such as --method permutation_shapley",
            file=sys.stderr,
        )
        return 2
    except (CLIError, *USER_ERRORS) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of stdout (for example `head`) closed the pipe: stop quietly.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

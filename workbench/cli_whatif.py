"""The what-if commands of ``workbench``: counterfactuals, sweep and faithfulness.

:func:`add_commands` registers them on the parser that :mod:`workbench.cli`
builds. Their errors go through the same one-line ``error:`` handling.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.bundle import load_bundle
from workbench.cli import (
    DEFAULT_BACKGROUND_ROWS,
    CLIError,
    _add_row_arguments,
    _check_out,
    _load_rows,
    _positive_int,
)
from workbench.counterfactual import GOAL_KINDS, CounterfactualError, find_counterfactuals, parse_goal
from workbench.data import load_dataset
from workbench.explain import METHODS, background_sample, explain
from workbench.explain.api import AUTO_EXACT_MAX_PLAYERS, count_players
from workbench.explain.game import BACKGROUND_BASELINES, GAME_BASELINES, OUTPUT_SPACES
from workbench.faithfulness import (
    DEFAULT_N_PERTURBATIONS,
    DEFAULT_N_RANDOM,
    attention_field_scores,
    compare_explainers,
    has_pair_attention,
)
from workbench.sweeps import DEFAULT_GRID_POINTS, DEFAULT_TOP_K, sweep_field


def _field_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _field_pair(text: str) -> tuple[str, str]:
    first, separator, second = text.partition(":")
    if not separator or not first.strip() or not second.strip():
        msg = f"expected two fields joined by ':', such as item_id:category; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return first.strip(), second.strip()


def _goal(text: str) -> Any:
    try:
        return parse_goal(text)
    except CounterfactualError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        msg = f"expected a number of seconds > 0; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_commands(commands: Any) -> None:
    """Add the counterfactuals, sweep and faithfulness commands to the ``workbench`` sub-command parser."""
    goals = "; ".join(f"{kind} ({text})" for kind, text in GOAL_KINDS.items())
    counterfactuals = commands.add_parser(
        "counterfactuals",
        help="find the fewest field changes that bring each row's prediction to a goal",
        description=(
            "Search, per row, for the fewest field-value substitutions that meet --goal, under the given "
            "constraints. Writes one Parquet line per (row, counterfactual, changed field); rows without a "
            "counterfactual get one line with the reason. Prints a JSON summary: success rate (among the rows that "
            "did not already meet the goal), fewest changes and "
            f"time. Goals are KIND:VALUE. Kinds: {goals}."
        ),
    )
    _add_row_arguments(counterfactuals, verb="search", default_rows=10)
    counterfactuals.add_argument("--goal", required=True, type=_goal, help="KIND:VALUE, such as flip:0.5 or above:0.3")
    counterfactuals.add_argument(
        "--immutable", type=_field_list, default=[], help="comma-separated fields that must keep their value"
    )
    counterfactuals.add_argument("--max-changes", type=_positive_int, default=3, help="changed fields at most (default: 3)")
    counterfactuals.add_argument(
        "--min-count", type=int, default=1, help="a new value must occur at least this often in training (default: 1)"
    )
    counterfactuals.add_argument(
        "--together",
        type=_field_pair,
        action="append",
        default=[],
        metavar="FIELD:FIELD",
        help="linked fields whose pair of values must occur in the reference data, repeatable (item_id:category)",
    )
    counterfactuals.add_argument(
        "--reference", type=Path, help="data file that defines seen value pairs and numeric grids (default: DATA)"
    )
    counterfactuals.add_argument("--n-counterfactuals", type=_positive_int, default=5, help="results per row (default: 5)")
    counterfactuals.add_argument("--beam-width", type=_positive_int, default=10, help="states kept per level (default: 10)")
    counterfactuals.add_argument(
        "--values-per-field", type=_positive_int, default=50, help="values tried per field after level 1 (default: 50)"
    )
    counterfactuals.add_argument(
        "--max-evaluations", type=_positive_int, default=200_000, help="model evaluations per row at most (default: 200000)"
    )
    counterfactuals.add_argument("--time-limit", type=_positive_float, help="seconds per row at most (default: none)")
    counterfactuals.add_argument("--random-state", type=int, default=0, help="seed of a sampled field order (default: 0)")
    counterfactuals.set_defaults(handler=run_counterfactuals)

    sweep = commands.add_parser(
        "sweep",
        help="set one field to each of its top values for every row: ICE lines and partial dependence",
        description=(
            "For the selected rows, set --field to each swept value and predict. Writes one Parquet line per value "
            "(training count, cohort count, partial dependence and ICE quantiles); --ice writes one line per (row, "
            "value). Prints the partial dependence as JSON."
        ),
    )
    _add_row_arguments(sweep, verb="sweep", default_rows=1000)
    sweep.add_argument("--field", required=True, help="categorical or numeric field to sweep")
    sweep.add_argument(
        "--values", type=_field_list, help="comma-separated raw values to sweep (default: the top-k by training count)"
    )
    sweep.add_argument(
        "--top-k",
        type=_positive_int,
        default=DEFAULT_TOP_K,
        help=f"categorical values swept by default, the most frequent in training (default: {DEFAULT_TOP_K})",
    )
    sweep.add_argument(
        "--grid-points",
        type=_positive_int,
        default=DEFAULT_GRID_POINTS,
        help=f"quantile levels of a numeric field's default grid over the data file (default: {DEFAULT_GRID_POINTS})",
    )
    sweep.add_argument("--output-space", choices=list(OUTPUT_SPACES), default="probability", help="units (default: probability)")
    sweep.add_argument("--ice", type=Path, help="also write one Parquet line per (row, value) to this file")
    sweep.set_defaults(handler=run_sweep)

    faithfulness = commands.add_parser(
        "faithfulness",
        help="compare explainers by deletion and insertion curves against random orders, and by infidelity",
        description=(
            "Explain the rows with each --methods entry, replay each ranking on the coalition game (deletion: remove "
            "fields by decreasing attribution; insertion: add them to the baseline) and compare the areas under the "
            "curves with those of random orders. Lower deletion and higher insertion AUC are more faithful. Writes "
            "one Parquet line per (explainer, mode); --curves writes the mean curves. Prints the table as JSON."
        ),
    )
    _add_row_arguments(faithfulness, verb="compare on", default_rows=100)
    faithfulness.add_argument(
        "--methods",
        type=_field_list,
        help=(
            "comma-separated attribution methods, and 'attention' for models with field attention (AutoInt+) "
            f"(default: exact_shapley up to {AUTO_EXACT_MAX_PLAYERS} fields, else permutation_shapley, plus "
            "integrated_gradients and attention where available)"
        ),
    )
    faithfulness.add_argument(
        "--baseline",
        choices=list(GAME_BASELINES),
        default="zero",
        help="what a removed field takes; mean and expectation use --background-rows (default: zero)",
    )
    faithfulness.add_argument(
        "--background-rows",
        type=_positive_int,
        help=f"rows drawn with --random-state from the data file for --baseline mean or expectation (default: {DEFAULT_BACKGROUND_ROWS})",
    )
    faithfulness.add_argument(
        "--random-orders", type=_positive_int, default=DEFAULT_N_RANDOM, help=f"random orders per row (default: {DEFAULT_N_RANDOM})"
    )
    faithfulness.add_argument("--random-state", type=int, default=0, help="seed of random orders, sampling and drops (default: 0)")
    faithfulness.add_argument("--infidelity", action="store_true", help="also compute captum's infidelity with field drops")
    faithfulness.add_argument(
        "--perturbations",
        type=_positive_int,
        default=DEFAULT_N_PERTURBATIONS,
        help=f"field-drop draws per row for --infidelity (default: {DEFAULT_N_PERTURBATIONS})",
    )
    faithfulness.add_argument("--curves", type=Path, help="also write the mean curves (one line per explainer, mode, step)")
    faithfulness.set_defaults(handler=run_faithfulness)


def _no_result_line(row: int, message: str, prediction: float, goal: str) -> dict[str, Any]:
    return {
        "row": row,
        "counterfactual": 0,
        "n_changes": 0,
        "field": None,
        "value_before": None,
        "value_after": None,
        "training_count": None,
        "prediction_before": prediction,
        "prediction_after": None,
        "goal": goal,
        "message": message,
    }


def run_counterfactuals(args: argparse.Namespace) -> int:
    _check_out(args.out, args.overwrite)
    if args.min_count < 0:
        msg = f"--min-count must be >= 0; got {args.min_count}"
        raise CLIError(msg)
    bundle = load_bundle(args.bundle)
    dataset, rows = _load_rows(args, bundle, whole_file=True)
    reference = None
    if args.reference is not None:
        reference = load_dataset(args.reference, bundle.schema, feature_map=args.feature_map)

    frames, seconds, fewest, evaluations = [], [], [], []
    already_met = 0
    started = time.monotonic()
    for row in rows:
        result = find_counterfactuals(
            bundle.model,
            dataset,
            int(row),
            args.goal,
            immutable=args.immutable,
            max_changes=args.max_changes,
            min_count=args.min_count,
            together=args.together or None,
            reference=reference,
            n_counterfactuals=args.n_counterfactuals,
            beam_width=args.beam_width,
            values_per_field=args.values_per_field,
            max_evaluations=args.max_evaluations,
            time_limit=args.time_limit,
            random_state=args.random_state,
        )
        seconds.append(result.seconds)
        evaluations.append(result.evaluations)
        if result.found:
            frame = result.to_frame()
            frame["message"] = result.message
            frames.append(frame)
            fewest.append(result.counterfactuals[0].n_changes)
        else:
            already_met += result.already_met
            line = _no_result_line(int(row), result.message, result.prediction_before, args.goal.describe())
            frames.append(pd.DataFrame([line]))
    table = pd.concat(frames, ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    summary = {
        "out": str(args.out),
        "rows": len(rows),
        "goal": args.goal.describe(),
        "found": len(fewest),
        "already_met": int(already_met),
        # Among the rows that needed a change: rows that already met the goal are neither successes nor failures.
        "success_rate": None if already_met == len(rows) else round(len(fewest) / (len(rows) - already_met), 4),
        "fewest_changes": {str(k): int(v) for k, v in zip(*np.unique(fewest, return_counts=True), strict=True)},
        "seconds_total": round(time.monotonic() - started, 3),
        "seconds_per_row_median": round(float(np.median(seconds)), 4),
        "seconds_per_row_max": round(float(np.max(seconds)), 4),
        "evaluations_per_row_mean": round(float(np.mean(evaluations)), 1),
    }
    print(json.dumps(summary, indent=2))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    _check_out(args.out, args.overwrite)
    if args.ice is not None:
        _check_out(args.ice, args.overwrite)
        if args.ice.resolve() == args.out.resolve():
            msg = "--ice and --out must be different files"
            raise CLIError(msg)

    bundle = load_bundle(args.bundle)
    dataset, rows = _load_rows(args, bundle, whole_file=True)
    values: list[Any] | None = args.values
    if values is not None and args.field in bundle.schema.field_names and bundle.schema[args.field].kind == "numeric":
        try:
            values = [float(value) for value in values]
        except ValueError:
            msg = f"--values of the numeric field {args.field!r} must be numbers; got {','.join(args.values)!r}"
            raise CLIError(msg) from None
    result = sweep_field(
        bundle.model,
        dataset,
        rows,
        args.field,
        values=values,
        top_k=args.top_k,
        grid_points=args.grid_points,
        output_space=args.output_space,
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.to_frame().to_parquet(args.out, index=False)
    if args.ice is not None:
        n_rows, n_values = result.ice.shape
        ice = pd.DataFrame(
            {
                "row": np.repeat(result.rows, n_values),
                "own_value": np.repeat(np.asarray(result.original_values, dtype=object), n_values),
                "value": np.tile(np.asarray(result.values, dtype=object), n_rows),
                "output": result.ice.reshape(-1),
            }
        )
        args.ice.parent.mkdir(parents=True, exist_ok=True)
        ice.to_parquet(args.ice, index=False)
    summary = {
        "out": str(args.out),
        "field": result.field,
        "rows": result.n_rows,
        "output_space": result.output_space,
        "partial_dependence": {
            str(value): round(float(pd_value), 6)
            for value, pd_value in zip(result.values, result.partial_dependence, strict=True)
        },
    }
    print(json.dumps(summary, indent=2))
    return 0


ATTENTION = "attention"
"""The --methods entry that ranks fields by the attention they receive (:func:`attention_field_scores`)."""


def _faithfulness_methods(args: argparse.Namespace, model: Any) -> list[str]:
    if args.methods is not None and not args.methods:
        msg = f"--methods is empty; give one or more of: {', '.join([*METHODS, ATTENTION])}"
        raise CLIError(msg)
    if args.methods is None:
        first = "exact_shapley" if count_players(model, None) <= AUTO_EXACT_MAX_PLAYERS else "permutation_shapley"
        defaults = [first, "integrated_gradients"] + ([ATTENTION] if has_pair_attention(model) else [])
        # Integrated Gradients integrates from the zero or OOV embedding only, so other baselines leave it out.
        return [name for name in defaults if name == ATTENTION or args.baseline in METHODS[name].baselines]
    unknown = [name for name in args.methods if name != ATTENTION and name not in METHODS]
    if unknown:
        msg = f"--methods: unknown method {unknown[0]!r}; valid: {', '.join([*METHODS, ATTENTION])}"
        raise CLIError(msg)
    if ATTENTION in args.methods and not has_pair_attention(model):
        msg = f"--methods attention: the {model.architecture} model has no field attention; autoint+ has"
        raise CLIError(msg)
    if len(set(args.methods)) != len(args.methods):
        msg = f"--methods lists a method twice: {','.join(args.methods)}"
        raise CLIError(msg)
    return list(args.methods)


def run_faithfulness(args: argparse.Namespace) -> int:
    _check_out(args.out, args.overwrite)
    if args.curves is not None:
        _check_out(args.curves, args.overwrite)
        if args.curves.resolve() == args.out.resolve():
            msg = "--curves and --out must be different files"
            raise CLIError(msg)
    uses_background = args.baseline in BACKGROUND_BASELINES
    if args.background_rows is not None and not uses_background:
        msg = f"--background-rows is used only with --baseline mean or expectation; got --baseline {args.baseline}"
        raise CLIError(msg)
    bundle = load_bundle(args.bundle)
    model = bundle.model
    methods = _faithfulness_methods(args, model)
    # The background comes from the whole file, not only from the compared rows.
    dataset, rows = _load_rows(args, bundle, whole_file=uses_background)
    background = None
    if uses_background:
        background = background_sample(dataset, args.background_rows or DEFAULT_BACKGROUND_ROWS, seed=args.random_state)

    scores: dict[str, Any] = {}
    for name in methods:
        if name == ATTENTION:
            scores[name] = attention_field_scores(model, dataset, rows)
            continue
        options = {"random_state": args.random_state} if "random_state" in (METHODS[name].options or ()) else {}
        if args.baseline not in METHODS[name].baselines:
            working = [other for other, entry in METHODS.items() if args.baseline in entry.baselines]
            msg = (
                f"--methods {name} supports the baselines {', '.join(METHODS[name].baselines)}; got --baseline "
                f"{args.baseline}. Leave {name} out, or choose a baseline it supports; methods for "
                f"{args.baseline}: {', '.join(working)}"
            )
            raise CLIError(msg)
        scores[name] = explain(
            model, dataset, rows, method=name, baseline=args.baseline, background=background, **options
        )
    result = compare_explainers(
        model,
        dataset,
        rows,
        scores,
        baseline=args.baseline,
        background=background,
        n_random=args.random_orders,
        random_state=args.random_state,
        with_infidelity=args.infidelity,
        n_perturbations=args.perturbations,
        normalize_infidelity=ATTENTION in scores,
    )

    table = result.to_frame()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    if args.curves is not None:
        args.curves.parent.mkdir(parents=True, exist_ok=True)
        result.curve_frame().to_parquet(args.curves, index=False)
    summary = {
        "out": str(args.out),
        "rows": len(rows),
        "baseline": args.baseline,
        "output_space": "logit",
        # Attention shares are not in output units, so with attention every infidelity is scale-normalised.
        "infidelity_normalised": bool(args.infidelity and ATTENTION in scores),
        "auc": {
            f"{line.explainer} {line.mode}": {
                "mean": round(float(line.auc_mean), 5),
                "se": round(float(line.auc_se), 5),
                "minus_random_mean": round(float(line.auc_minus_random_mean), 5),
                "minus_random_se": round(float(line.auc_minus_random_se), 5),
                **({} if np.isnan(line.infidelity_mean) else {"infidelity": round(float(line.infidelity_mean), 5)}),
            }
            for line in table.itertuples()
        },
    }
    print(json.dumps(summary, indent=2))
    return 0

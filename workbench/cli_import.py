"""The ``workbench import`` command: turn a model trained with another library into a workbench bundle.

``workbench import fuxictr`` rebuilds a FuxiCTR model from its data folder
(``feature_map.json``, ``feature_vocab.json``), its model class and params, loads
the checkpoint with ``torch.load(weights_only=True)`` and writes a bundle whose
manifest names the class and the model-zoo folder. :func:`register` adds the
command to the parser that :mod:`workbench.cli` builds; its errors go through
the same one-line ``error:`` handling.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``import`` and its ``fuxictr`` sub-command to the ``workbench`` sub-command parser."""
    command = subparsers.add_parser(
        "import",
        help="turn a model trained with another library (FuxiCTR) into a workbench bundle",
        description="Rebuild a model trained with another library, load its weights safely and write a workbench bundle.",
    )
    libraries = command.add_subparsers(dest="library", metavar="LIBRARY", required=True)
    fuxictr = libraries.add_parser(
        "fuxictr",
        help="import a FuxiCTR checkpoint (<expid>.model)",
        description=(
            "Rebuild a FuxiCTR model class from a model-zoo folder with the data set's feature_map.json and the "
            "training params, load the checkpoint (weights only) and write a bundle. Params come from --config and "
            "--expid (model_config.yaml and dataset_config.yaml, read as plain YAML) or from --model and --param; "
            "--param overrides the config. The model-zoo folder you name here is trusted: its code is imported."
        ),
    )
    fuxictr.add_argument("--checkpoint", required=True, type=Path, help="the checkpoint FuxiCTR saved (<expid>.model)")
    fuxictr.add_argument(
        "--model-zoo",
        required=True,
        help=(
            "folder that holds <Model>/src/ as FuxiCTR's model_zoo does, or an installed package such as "
            "model_zoo.LongCTR"
        ),
    )
    fuxictr.add_argument(
        "--data-dir",
        type=Path,
        help="FuxiCTR data folder with feature_map.json (default: data_root/dataset_id from --config)",
    )
    fuxictr.add_argument("--model", help="model class name, such as DeepFM (default: 'model' from --config)")
    fuxictr.add_argument(
        "--config", type=Path, help="FuxiCTR config folder with model_config.yaml and dataset_config.yaml"
    )
    fuxictr.add_argument("--expid", help="experiment id in model_config.yaml (with --config)")
    fuxictr.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a model param, the value read as YAML (embedding_dim=16, dnn_hidden_units=[64,32]); repeat for more",
    )
    fuxictr.add_argument("--out", required=True, type=Path, help="bundle folder to write, such as models/deepfm")
    fuxictr.add_argument("--name", help="model name shown in the workbench (default: the --out folder name)")
    fuxictr.add_argument(
        "--allow-pickle",
        action="store_true",
        help=(
            "read numeric normalisers from feature_processor.pkl; unpickling runs code from the file, "
            "so use it only for a file you trust"
        ),
    )
    fuxictr.add_argument("--overwrite", action="store_true", help="replace --out if it is a workbench bundle")
    fuxictr.set_defaults(handler=run_import_fuxictr)


def _params(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """Return the training params and the data folder from --config/--expid, --param and --data-dir."""
    from workbench.adapters import fuxictr
    from workbench.cli import CLIError

    params: dict[str, Any] = {}
    data_dir = args.data_dir
    if (args.config is None) != (args.expid is None):
        msg = (
            "--config and --expid go together: give both (a FuxiCTR config folder and an experiment id in it) "
            "or neither"
        )
        raise CLIError(msg)
    if args.config is not None:
        params = fuxictr.load_config(args.config, args.expid)
        if data_dir is None and isinstance(params.get("data_root"), str):
            root = Path(params["data_root"])
            # run_expid.py runs in the model folder, the parent of config/, so a relative data_root starts there.
            candidates = [root] if root.is_absolute() else [args.config.resolve().parent / root, Path.cwd() / root]
            data_dir = next((c / params["dataset_id"] for c in candidates if (c / params["dataset_id"]).is_dir()), None)
    for text in args.param:
        name, value = fuxictr.parse_param(text)
        params[name] = value
    if args.model is not None:
        params["model"] = args.model
    if not isinstance(params.get("model"), str):
        msg = "name the model class with --model (such as --model DeepFM) or give --config and --expid"
        raise CLIError(msg)
    if data_dir is None:
        msg = "give --data-dir, the FuxiCTR data folder with feature_map.json (its name is the dataset id)"
        raise CLIError(msg)
    if not (Path(data_dir) / "feature_map.json").is_file():
        msg = (
            f"{str(data_dir)!r} has no feature_map.json; --data-dir must be the FuxiCTR data folder of the "
            "training run"
        )
        raise CLIError(msg)
    if "embedding_dim" not in params:
        msg = "the params have no embedding_dim; add --param embedding_dim=N with the model's embedding size"
        raise CLIError(msg)
    return params, Path(data_dir)


def run_import_fuxictr(args: argparse.Namespace) -> int:
    """Import a FuxiCTR checkpoint as a bundle and print a JSON summary."""
    from workbench.adapters import fuxictr
    from workbench.adapters.bundle import save_adapted_bundle

    params, data_dir = _params(args)
    model_class = fuxictr.resolve_model_class(params["model"], args.model_zoo, explicit=True)
    info, schema = fuxictr.load_data_dir(data_dir, allow_pickle=args.allow_pickle)
    numeric = [f.name for f in schema.fields if f.kind == "numeric"]
    if numeric and not args.allow_pickle:
        print(
            f"note: numeric field(s) {', '.join(numeric)} take FuxiCTR's processed values; raw CSV with them needs "
            "--allow-pickle (the normalisers are only in feature_processor.pkl)",
            file=sys.stderr,
        )
    adapter = fuxictr.load_fuxictr_model(model_class, info, args.checkpoint, params, schema=schema)
    recipe = fuxictr.recipe_for(adapter, model_class, args.model_zoo, params)
    name = args.name or args.out.name
    path = save_adapted_bundle(adapter, args.out, kind="fuxictr", recipe=recipe, name=name, overwrite=args.overwrite)
    summary = {
        "bundle": str(path),
        "model": adapter.architecture,
        "dataset_id": info.dataset_id,
        "feature_map_dialect": info.dialect,
        "fields": schema.field_names,
        "vocabulary": schema.extra["fuxictr"]["vocabulary_from"],
        "probes": [probe.name for probe in adapter.probes()],
    }
    print(json.dumps(summary, indent=1))
    return 0

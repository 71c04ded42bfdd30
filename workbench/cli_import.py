"""The ``workbench import`` command: turn a model trained with another library into a workbench bundle.

``workbench import fuxictr`` rebuilds a FuxiCTR model from its data folder
(``feature_map.json``, ``feature_vocab.json``), its model class and params, loads
the checkpoint with ``torch.load(weights_only=True)`` and writes a bundle whose
manifest names the class and the model-zoo folder.

``workbench import deepctr`` rebuilds a DeepCTR-Torch model from its column
spec, vocabularies, class name and constructor params, loads its saved
``state_dict`` with ``torch.load(weights_only=True)`` and writes a bundle whose
recipe names the class (one of ``deepctr_torch.models``) and stores the rest.

:func:`register` adds the commands to the parser that :mod:`workbench.cli`
builds; their errors go through the same one-line ``error:`` handling.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``import`` and its ``fuxictr`` and ``deepctr`` sub-commands to the ``workbench`` sub-command parser."""
    command = subparsers.add_parser(
        "import",
        help="turn a model trained with another library (FuxiCTR, DeepCTR-Torch) into a workbench bundle",
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
    _register_deepctr(libraries)


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


# ----- workbench import deepctr ------------------------------------------------------------------


def _register_deepctr(libraries: Any) -> None:
    """Add ``import deepctr`` to the ``import`` sub-command parser."""
    # The adapter module imports deepctr_torch only inside its functions, so importing it here stays cheap.
    from workbench.adapters.deepctr import MODEL_CLASSES

    deepctr = libraries.add_parser(
        "deepctr",
        help="import a DeepCTR-Torch model saved with torch.save(model.state_dict(), path)",
        description=(
            "Rebuild a DeepCTR-Torch model (deepctr-torch 0.3.0) from its feature columns and vocabularies, load "
            "its state_dict (weights only, no pickled code runs) and write a bundle. DeepCTR saves neither the "
            "model class nor the constructor params, so --model-class and the params must be the ones used in "
            "training; weights of another shape are rejected with the tensors named, but a different option that "
            "keeps the shapes (an activation, for one) is not detected."
        ),
    )
    deepctr.add_argument(
        "--weights",
        required=True,
        type=Path,
        metavar="FILE",
        help="the state_dict file saved with torch.save(model.state_dict(), path); read with weights_only=True",
    )
    deepctr.add_argument(
        "--columns",
        required=True,
        type=Path,
        metavar="FILE.json",
        help=(
            'JSON column spec {"linear": [...], "dnn": [...]}, each list as workbench.adapters.deepctr.columns_to_spec '
            "returns it for the linear and DNN feature columns of training; a plain list is used for both"
        ),
    )
    deepctr.add_argument(
        "--vocabularies",
        required=True,
        type=Path,
        metavar="FILE.json",
        help=(
            "JSON object: per feature, a list with the raw value at each DeepCTR id (the LabelEncoder's "
            "classes_, null for the padding id 0 of a history) or an object of raw value to id"
        ),
    )
    deepctr.add_argument(
        "--model-class",
        required=True,
        metavar="CLASS",
        help=f"the deepctr_torch.models class used in training, one of: {', '.join(MODEL_CLASSES)}",
    )
    deepctr.add_argument(
        "--params",
        type=Path,
        metavar="FILE.json",
        help="JSON object of the constructor options used in training, such as {\"dnn_hidden_units\": [256, 128]}",
    )
    deepctr.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=(
            "a constructor option used in training, the value read as JSON (dnn_hidden_units=[64,32], "
            "dnn_dropout=0.5, dnn_use_bn=true), else taken as a string (dnn_activation=relu); overrides --params; "
            "repeat for more"
        ),
    )
    deepctr.add_argument("--label", default="label", help="label column of the data files (default: label)")
    deepctr.add_argument("--out", required=True, type=Path, help="bundle folder to write, such as models/deepfm")
    deepctr.add_argument("--name", help="model name shown in the workbench (default: the --out folder name)")
    deepctr.add_argument("--overwrite", action="store_true", help="replace --out if it is a workbench bundle")
    deepctr.add_argument(
        "--allow-pickle",
        action="store_true",
        help=(
            "also accept --weights saved whole with torch.save(model, path); unpickling runs code from the file, "
            "so use it only for a file you trust (the bundle keeps only the weights)"
        ),
    )
    deepctr.set_defaults(handler=run_import_deepctr)


def _parse_deepctr_param(text: str) -> tuple[str, Any]:
    """Parse ``NAME=VALUE``: the value as JSON, or the text itself when it is not JSON."""
    from workbench.cli import CLIError

    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        msg = f"--param {text!r} must look like NAME=VALUE, such as dnn_hidden_units=[64,32] or dnn_activation=relu"
        raise CLIError(msg)
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value.strip()


def _deepctr_params(args: argparse.Namespace) -> dict[str, Any]:
    """Return the constructor params from --params and --param; --param wins."""
    from workbench.cli import CLIError

    params: dict[str, Any] = {}
    if args.params is not None:
        try:
            loaded = json.loads(args.params.read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"--params file not found: {str(args.params)!r}"
            raise CLIError(msg) from None
        except (OSError, UnicodeDecodeError) as err:
            msg = f"cannot read the --params file {str(args.params)!r}: {err}"
            raise CLIError(msg) from err
        except json.JSONDecodeError as err:
            msg = f"the --params file {str(args.params)!r} is not valid JSON: {err}"
            raise CLIError(msg) from err
        if not isinstance(loaded, dict):
            msg = (
                f"the --params file {str(args.params)!r} must hold a JSON object of constructor options, "
                f"such as {{\"dnn_hidden_units\": [256, 128]}}; got a {type(loaded).__name__}"
            )
            raise CLIError(msg)
        params.update(loaded)
    for text in args.param:
        name, value = _parse_deepctr_param(text)
        params[name] = value
    return params


def run_import_deepctr(args: argparse.Namespace) -> int:
    """Import a DeepCTR-Torch state_dict as a bundle and print a JSON summary."""
    from workbench.adapters import deepctr
    from workbench.adapters.bundle import save_adapted_bundle
    from workbench.cli import CLIError

    # Check the output folder first: loading the model is the slow part.
    if args.out.exists() and not args.overwrite:
        msg = f"{str(args.out)!r} already exists; choose another --out or pass --overwrite to replace the bundle"
        raise CLIError(msg)
    params = _deepctr_params(args)
    adapter = deepctr.load_deepctr(
        args.weights,
        args.columns,
        args.vocabularies,
        model_class=args.model_class,
        params=params,
        label=args.label,
        allow_pickle=args.allow_pickle,
    )
    # load_deepctr has just parsed both files; the recipe stores their content.
    spec = json.loads(args.columns.read_text(encoding="utf-8"))
    vocabularies = json.loads(args.vocabularies.read_text(encoding="utf-8"))
    recipe = deepctr.recipe_for(args.model_class, spec, params, vocabularies, label=args.label)
    name = args.name or args.out.name
    path = save_adapted_bundle(adapter, args.out, kind="deepctr", recipe=recipe, name=name, overwrite=args.overwrite)
    schema = adapter.schema
    numeric = [f.name for f in schema.fields if f.kind in ("numeric", "dense")]
    if numeric:
        shown = ", ".join(numeric[:5]) + (", ..." if len(numeric) > 5 else "")
        print(
            f"note: the {len(numeric)} numeric field(s) ({shown}) pass their values to the model unchanged; "
            "data files must contain them scaled as in training",
            file=sys.stderr,
        )
    summary = {
        "bundle": str(path),
        "model": adapter.architecture,
        "model_class": args.model_class,
        "params": params,
        "label": schema.label,
        "fields": schema.field_names,
        "probes": [probe.name for probe in adapter.probes()],
    }
    print(json.dumps(summary, indent=1))
    return 0

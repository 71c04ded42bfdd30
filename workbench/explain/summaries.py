"""Tables that summarise attributions and interactions: top pairs, pair examples, per-value effects, comparisons.

These are what the CLI prints and the app shows next to its figures. Nothing
here imports Streamlit or plotly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.explain.interaction import Interaction
from workbench.explain.result import Attribution


def _player_position(interaction: Interaction, name: str) -> int:
    if name not in interaction.player_names:
        msg = f"unknown player {name!r}; players: {', '.join(interaction.player_names)}"
        raise KeyError(msg)
    return interaction.player_names.index(name)


def _raw_text(raw: pd.DataFrame | None, name: str, positions: np.ndarray) -> list[str]:
    if raw is None:
        return [""] * len(positions)
    return raw[name].iloc[positions].astype(str).tolist()


def top_pairs(interaction: Interaction, k: int | None = None) -> pd.DataFrame:
    """List the pairs ``i < j`` by mean |pair value| over samples, largest first.

    Parameters
    ----------
    interaction : Interaction
    k : int, optional
        Keep only the ``k`` largest pairs (default: all ``n_players * (n_players - 1) / 2``).

    Returns
    -------
    DataFrame
        Columns ``player_i``, ``player_j``, ``mean_abs_value`` (equal to
        ``interaction.mean_abs()`` at ``[i, j]``), ``mean_value`` (signed),
        ``max_abs_value``, and ``example``: the row with the largest
        |value| and the raw values of both players there, such as
        ``"row 17: city = Berlin, device = mobile (+0.4210)"``. Values are in
        the units of ``interaction.output_space``.
    """
    if k is not None and k < 1:
        msg = f"k must be >= 1 or None; got {k}"
        raise ValueError(msg)
    upper_i, upper_j = np.triu_indices(interaction.n_players, k=1)
    # (n_samples, n_pairs)
    values = interaction.pairs[:, upper_i, upper_j]
    mean_abs = np.abs(values).mean(axis=0)
    strongest = np.abs(values).argmax(axis=0) if values.size else np.zeros(upper_i.size, dtype=np.int64)
    names = interaction.player_names
    examples = []
    for pair, (i, j) in enumerate(zip(upper_i, upper_j, strict=True)):
        position = int(strongest[pair])
        raw_i = _raw_text(interaction.raw_values, names[i], np.array([position]))[0]
        raw_j = _raw_text(interaction.raw_values, names[j], np.array([position]))[0]
        examples.append(
            f"row {int(interaction.rows[position])}: {names[i]} = {raw_i}, {names[j]} = {raw_j} "
            f"({values[position, pair]:+.4f})"
        )
    frame = pd.DataFrame(
        {
            "player_i": [names[i] for i in upper_i],
            "player_j": [names[j] for j in upper_j],
            "mean_abs_value": mean_abs,
            "mean_value": values.mean(axis=0),
            "max_abs_value": np.abs(values).max(axis=0) if values.size else np.zeros(upper_i.size),
            "example": examples,
        }
    )
    frame = frame.sort_values("mean_abs_value", ascending=False, kind="stable").reset_index(drop=True)
    return frame if k is None else frame.iloc[:k]


def pair_examples(interaction: Interaction, player_i: str, player_j: str, n: int = 10) -> pd.DataFrame:
    """Return the ``n`` samples with the largest |pair value| of ``{player_i, player_j}``, largest first.

    Returns
    -------
    DataFrame
        Columns ``row`` (data set row), ``<player_i> value`` and ``<player_j>
        value`` (raw values as the model saw them), ``interaction`` (the pair
        value) and ``prediction``, both in the units of ``interaction.output_space``.
    """
    i = _player_position(interaction, player_i)
    j = _player_position(interaction, player_j)
    if i == j:
        msg = f"a pair needs two different players; got {player_i!r} twice"
        raise ValueError(msg)
    if n < 1:
        msg = f"n must be >= 1; got {n}"
        raise ValueError(msg)
    values = interaction.pairs[:, i, j]
    order = np.argsort(-np.abs(values), kind="stable")[:n]
    return pd.DataFrame(
        {
            "row": interaction.rows[order],
            f"{player_i} value": _raw_text(interaction.raw_values, player_i, order),
            f"{player_j} value": _raw_text(interaction.raw_values, player_j, order),
            "interaction": values[order],
            "prediction": interaction.predictions[order],
        }
    )


def value_effects(attribution: Attribution, field: str, *, min_count: int = 1) -> pd.DataFrame:
    """Average each raw value's attribution in one field: which values raise or lower the prediction.

    Parameters
    ----------
    attribution : Attribution
        Needs ``raw_values``.
    field : str
        A field (or group) of ``attribution``.
    min_count : int
        Leave out raw values seen in fewer samples (default 1: keep all).

    Returns
    -------
    DataFrame
        One line per raw value with ``raw_value``, ``count`` (samples with that
        value), ``mean_attribution`` and ``std_attribution`` (0 for a single
        sample), sorted by ``mean_attribution`` from the largest rise to the
        largest drop, in the units of ``attribution.output_space``.
    """
    if field not in attribution.field_names:
        msg = f"unknown field {field!r}; fields: {', '.join(attribution.field_names)}"
        raise KeyError(msg)
    if attribution.raw_values is None:
        msg = "this attribution has no raw values; compute it on a CTRDataset to get them"
        raise ValueError(msg)
    frame = pd.DataFrame(
        {
            "raw_value": attribution.raw_values[field].astype(str).to_numpy(),
            "attribution": attribution.values[:, attribution.field_names.index(field)],
        }
    )
    grouped = frame.groupby("raw_value", sort=False)["attribution"]
    table = pd.DataFrame(
        {
            "count": grouped.size(),
            "mean_attribution": grouped.mean(),
            "std_attribution": grouped.std(ddof=0),
        }
    ).reset_index()
    table = table[table["count"] >= min_count]
    return table.sort_values(["mean_attribution", "count"], ascending=[False, False], kind="stable").reset_index(
        drop=True
    )


def _comparison_labels(first: Attribution, second: Attribution) -> tuple[str, str]:
    if first.method != second.method:
        return first.method, second.method
    return f"{first.method} (1)", f"{second.method} (2)"


def importance_comparison(first: Attribution, second: Attribution) -> pd.DataFrame:
    """Put the global importances (mean |attribution| per field) of two attributions side by side.

    Returns
    -------
    DataFrame
        Indexed by field in the order of ``first``'s importance; one column of
        mean |attribution| per attribution, labelled by method, and the rank of
        the field under each (1 = most important).

    Raises
    ------
    ValueError
        When the two attributions have different fields or output spaces.
    """
    if set(first.field_names) != set(second.field_names):
        msg = (
            f"the attributions have different fields: {', '.join(first.field_names)} "
            f"versus {', '.join(second.field_names)}"
        )
        raise ValueError(msg)
    if first.output_space != second.output_space:
        msg = f"the attributions are in different output spaces: {first.output_space} versus {second.output_space}"
        raise ValueError(msg)
    label_first, label_second = _comparison_labels(first, second)
    importance_first = first.mean_abs()
    importance_second = second.mean_abs().reindex(importance_first.index)
    frame = pd.DataFrame({label_first: importance_first, label_second: importance_second})
    frame[f"rank by {label_first}"] = importance_first.rank(ascending=False, method="min").astype(int)
    frame[f"rank by {label_second}"] = importance_second.rank(ascending=False, method="min").astype(int)
    frame.index.name = "field"
    return frame


def rank_correlation(first: Attribution, second: Attribution) -> dict[str, float]:
    """Return Spearman's rho and Kendall's tau between the two global importances (NaN below 2 fields)."""
    # Imported here because scipy.stats takes about a second to import, and the CLI does not need it.
    from scipy import stats

    frame = importance_comparison(first, second)
    a, b = frame.iloc[:, 0].to_numpy(), frame.iloc[:, 1].to_numpy()
    if len(frame) < 2:
        return {"spearman": float("nan"), "kendall": float("nan")}
    return {
        "spearman": float(stats.spearmanr(a, b).statistic),
        "kendall": float(stats.kendalltau(a, b).statistic),
    }


def write_interaction_parquet(interaction: Interaction, path: str | Path) -> Path:
    """Write ``interaction.to_frame()`` to Parquet, with index, baseline, space and parameters in the file metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table = pa.Table.from_pandas(interaction.to_frame(), preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[b"workbench.interaction"] = json.dumps(
        {
            "index": interaction.index,
            "baseline": interaction.baseline,
            "output_space": interaction.output_space,
            "parameters": interaction.parameters,
            "player_names": list(interaction.player_names),
        },
        default=str,
    ).encode("utf-8")
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path

"""Comparisons of two models on the same data rows: attribution agreement, interaction maps and prediction gaps.

Each model reads the data file with its own schema, so row ``i`` is the same
impression for both. Models trained on different schemas are compared on the
fields (or field groups) they share by name, and every result carries a
``note`` that names what was left out of which model. Attributions and
interactions of the two models must cover the same rows, in the same order,
and be in the same output space.

Nothing here imports Streamlit or plotly; :mod:`workbench.compare_figures`
draws these results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from workbench.explain.interaction import Interaction
from workbench.explain.result import Attribution

DEFAULT_NAMES = ("A", "B")
"""Default names of the two models in notes, column names and figure labels."""

PAIR_STATISTICS: dict[str, str] = {"mean_abs": "mean |value|", "mean": "signed mean value"}
"""Global pair statistics that :func:`interaction_difference` can subtract, with their labels."""

DisagreementOrder = Literal["prediction", "agreement"]
PairStatistic = Literal["mean_abs", "mean"]

KENDALL_VALUES_PER_CHUNK = 4_000_000
"""Maximum number of pair signs held at once while computing per-sample Kendall's tau."""


# --- common fields and checks -----------------------------------------------------


def _check_names(names: Sequence[str]) -> tuple[str, str]:
    if len(names) != 2 or not all(isinstance(name, str) and name for name in names):
        msg = f"names must be two non-empty strings, one per model; got {names!r}"
        raise ValueError(msg)
    if names[0] == names[1]:
        msg = f"the two model names must differ, because they label columns and traces; got {names[0]!r} twice"
        raise ValueError(msg)
    return str(names[0]), str(names[1])


def common_fields(
    first: Sequence[str], second: Sequence[str], *, names: Sequence[str] = DEFAULT_NAMES
) -> tuple[list[str], str]:
    """Return the field names two models share, in the first model's order, and a note on the rest.

    Parameters
    ----------
    first, second : sequence of str
        Field (or player) names of the two models.
    names : pair of str
        Names of the two models in the note.

    Returns
    -------
    list of str
        The names in both sequences, in the order of ``first``.
    str
        ``""`` when both sequences contain the same names; otherwise, for
        example, ``"compared on 8 common fields; left out: city (A only),
        os (B only)"``.
    """
    name_first, name_second = _check_names(names)
    in_second = set(second)
    in_first = set(first)
    common = [name for name in first if name in in_second]
    only_first = [name for name in first if name not in in_second]
    only_second = [name for name in second if name not in in_first]
    if not only_first and not only_second:
        return common, ""
    left_out = [f"{name} ({name_first} only)" for name in only_first]
    left_out += [f"{name} ({name_second} only)" for name in only_second]
    plural = "" if len(common) == 1 else "s"
    return common, f"compared on {len(common)} common field{plural}; left out: {', '.join(left_out)}"


def _group_note(
    first: Mapping[str, Any], second: Mapping[str, Any], common: Sequence[str], names: tuple[str, str]
) -> str:
    """Name the common players that are field groups with different fields in the two results."""
    groups_first = first.get("players") or {}
    groups_second = second.get("players") or {}
    differing = []
    for player in common:
        fields_first = list(groups_first.get(player, [player]))
        fields_second = list(groups_second.get(player, [player]))
        if sorted(fields_first) != sorted(fields_second):
            differing.append(
                f"{player} = {', '.join(fields_first)} in {names[0]} but {', '.join(fields_second)} in {names[1]}"
            )
    if not differing:
        return ""
    return "groups with the same name cover different fields: " + "; ".join(differing)


def _check_same_rows(first: np.ndarray, second: np.ndarray, what: str, names: tuple[str, str]) -> None:
    if first.shape == second.shape and np.array_equal(first, second):
        return
    if first.shape != second.shape:
        detail = f"{names[0]} has {first.size} rows and {names[1]} has {second.size}"
    else:
        position = int(np.flatnonzero(first != second)[0])
        detail = (
            f"at position {position}, {names[0]} has row {int(first[position])} "
            f"and {names[1]} row {int(second[position])}"
        )
    msg = (
        f"the two {what} cover different data rows ({detail}); explain both models on the same rows, "
        "in the same order"
    )
    raise ValueError(msg)


def _check_same_space(first: str, second: str, names: tuple[str, str]) -> None:
    if first != second:
        msg = (
            f"the two results are in different output spaces: {first} ({names[0]}) versus {second} ({names[1]}); "
            "compute both with the same output_space"
        )
        raise ValueError(msg)


def _check_count(value: object, what: str, *, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        msg = f"{what} must be an integer >= 1{' or None' if allow_none else ''}; got {value!r}"
        raise ValueError(msg)


def _ctr(values: np.ndarray, output_space: str) -> np.ndarray:
    """Return click probabilities: the sigmoid of logits, probabilities as they are."""
    values = np.asarray(values, dtype=np.float64)
    if output_space == "logit":
        return 1.0 / (1.0 + np.exp(-values))
    return values


def _join_notes(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


# --- per-sample agreement measures ------------------------------------------------


def _row_spearman(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair: Pearson correlation of average ranks, NaN where a row is constant."""
    from scipy import stats

    ranks_first = stats.rankdata(first, axis=1)
    ranks_second = stats.rankdata(second, axis=1)
    ranks_first -= ranks_first.mean(axis=1, keepdims=True)
    ranks_second -= ranks_second.mean(axis=1, keepdims=True)
    covariance = (ranks_first * ranks_second).sum(axis=1)
    scale = np.sqrt((ranks_first**2).sum(axis=1) * (ranks_second**2).sum(axis=1))
    out = np.full(first.shape[0], np.nan)
    defined = scale > 0
    out[defined] = covariance[defined] / scale[defined]
    return np.clip(out, -1.0, 1.0)


def _row_kendall(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair, NaN where a row is constant.

    With ``s_a`` and ``s_b`` the signs of the differences over all field pairs
    ``i < j``, tau-b is ``Σ s_a s_b / sqrt(Σ s_a² · Σ s_b²)``: concordant minus
    discordant pairs over the square root of the untied pair counts.
    """
    n_samples, n_fields = first.shape
    upper_i, upper_j = np.triu_indices(n_fields, k=1)
    out = np.full(n_samples, np.nan)
    if upper_i.size == 0:
        return out
    chunk = max(1, KENDALL_VALUES_PER_CHUNK // upper_i.size)
    for start in range(0, n_samples, chunk):
        rows = slice(start, start + chunk)
        signs_first = np.sign(first[rows, upper_i] - first[rows, upper_j])
        signs_second = np.sign(second[rows, upper_i] - second[rows, upper_j])
        numerator = (signs_first * signs_second).sum(axis=1)
        scale = np.sqrt((signs_first**2).sum(axis=1) * (signs_second**2).sum(axis=1))
        part = np.full(numerator.shape, np.nan)
        defined = scale > 0
        part[defined] = numerator[defined] / scale[defined]
        out[rows] = part
    return np.clip(out, -1.0, 1.0)


def _top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Mark the ``k`` fields of largest |value| in each row; a tie at the k-th place goes to the earlier field."""
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _nan_summary(values: np.ndarray) -> tuple[float, float, int]:
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return float("nan"), float("nan"), int(values.size)
    return float(defined.mean()), float(np.median(defined)), int(values.size - defined.size)


# --- attribution agreement --------------------------------------------------------


@dataclass(frozen=True)
class AttributionAgreement:
    """How far two models' attributions of the same rows agree, per field and per sample.

    The per-sample measures compare the two attribution vectors of a row over
    the common fields. ``spearman`` and ``kendall`` (tau-b) rank the *signed*
    attributions, so a field that raises the CTR in one model and lowers it in
    the other counts as disagreement. Both are NaN for a row where either
    model gives every common field the same value, because the correlation is
    undefined there, and the means in :meth:`summary` leave those rows out.
    ``top_k_overlap`` is ``|top_k(A) ∩ top_k(B)| / k`` with the top ``k``
    fields by |attribution|, where a tie at the k-th place goes to the field
    earlier in ``field_names``. Means are in the units of ``output_space``.
    """

    names: tuple[str, str]
    """Names of the two models, ``first`` then ``second``."""
    field_names: tuple[str, ...]
    """The common fields, in the first model's order."""
    rows: np.ndarray
    """Data set row of each sample, shape (n_samples,)."""
    mean_first: np.ndarray
    """Mean signed attribution per common field of the first model, shape (n_fields,)."""
    mean_second: np.ndarray
    mean_abs_first: np.ndarray
    """Mean |attribution| per common field of the first model, shape (n_fields,)."""
    mean_abs_second: np.ndarray
    spearman: np.ndarray
    """Spearman's rho per sample, shape (n_samples,); NaN where undefined."""
    kendall: np.ndarray
    """Kendall's tau-b per sample, shape (n_samples,); NaN where undefined."""
    top_k_overlap: np.ndarray
    """Share of the ``k`` largest |attributions| that both models share, per sample, in [0, 1]."""
    k: int
    note: str
    """Fields left out of one model, and other differences such as baselines; ``""`` when there are none."""
    output_space: str
    method: str
    """The attribution method, or ``"first method / second method"`` when they differ."""

    @property
    def n_samples(self) -> int:
        return int(self.rows.shape[0])

    def field_table(self) -> pd.DataFrame:
        """Return one line per common field, ordered by the first model's mean |attribution|, largest first.

        Columns: ``mean {name}`` (signed mean attribution) of each model,
        ``difference`` (first minus second), ``mean |.| {name}`` of each model
        and ``rank {name}`` (rank by mean |attribution|, 1 = most important).
        """
        first, second = self.names
        frame = pd.DataFrame(
            {
                f"mean {first}": self.mean_first,
                f"mean {second}": self.mean_second,
                "difference": self.mean_first - self.mean_second,
                f"mean |.| {first}": self.mean_abs_first,
                f"mean |.| {second}": self.mean_abs_second,
            },
            index=pd.Index(list(self.field_names), name="field"),
        )
        frame[f"rank {first}"] = frame[f"mean |.| {first}"].rank(ascending=False, method="min").astype(int)
        frame[f"rank {second}"] = frame[f"mean |.| {second}"].rank(ascending=False, method="min").astype(int)
        return frame.sort_values(f"mean |.| {first}", ascending=False, kind="stable")

    def sample_table(self) -> pd.DataFrame:
        """Return one line per sample: ``row``, ``spearman``, ``kendall`` and ``top_k_overlap``."""
        return pd.DataFrame(
            {
                "row": self.rows,
                "spearman": self.spearman,
                "kendall": self.kendall,
                "top_k_overlap": self.top_k_overlap,
            }
        )

    def summary(self) -> dict[str, float | int]:
        """Return the mean and median of each per-sample measure, and the rank agreement of global importance.

        Keys: ``n_samples``, ``n_fields``, ``k``; ``mean_spearman``,
        ``median_spearman`` and ``undefined_spearman`` (rows left out because
        the correlation is undefined), the same three for ``kendall``;
        ``mean_top_k_overlap`` and ``median_top_k_overlap``; and
        ``importance_spearman`` and ``importance_kendall``, the rank
        correlations of the two models' mean |attribution| per field (NaN
        below 2 fields or when either importance is constant).
        """
        out: dict[str, float | int] = {
            "n_samples": self.n_samples,
            "n_fields": len(self.field_names),
            "k": self.k,
        }
        for name in ("spearman", "kendall"):
            mean, median, undefined = _nan_summary(getattr(self, name))
            out[f"mean_{name}"] = mean
            out[f"median_{name}"] = median
            out[f"undefined_{name}"] = undefined
        mean, median, _ = _nan_summary(self.top_k_overlap)
        out["mean_top_k_overlap"] = mean
        out["median_top_k_overlap"] = median
        importance = np.vstack([self.mean_abs_first, self.mean_abs_second])
        out["importance_spearman"] = float(_row_spearman(importance[:1], importance[1:])[0])
        out["importance_kendall"] = float(_row_kendall(importance[:1], importance[1:])[0])
        return out


def attribution_agreement(
    first: Attribution, second: Attribution, *, k: int = 3, names: Sequence[str] = DEFAULT_NAMES
) -> AttributionAgreement:
    """Compare two models' attributions of the same rows on their common fields.

    Parameters
    ----------
    first, second : Attribution
        Attributions of the same rows, in the same order and output space.
        Their fields (or field groups) are matched by name.
    k : int
        Number of fields by |attribution| in the top-k overlap, from 1 to the
        number of common fields.
    names : pair of str
        Names of the two models in notes, tables and figures.

    Returns
    -------
    AttributionAgreement

    Raises
    ------
    ValueError
        When the rows or output spaces differ, the two share no field, ``k``
        is out of range, or ``names`` are not two different strings.

    Notes
    -----
    The note names the fields of only one model, field groups whose name is
    shared but whose fields differ, and differing methods or baselines
    (attributions against different baselines answer different questions).
    """
    names = _check_names(names)
    _check_same_rows(np.asarray(first.rows), np.asarray(second.rows), "attributions", names)
    _check_same_space(first.output_space, second.output_space, names)
    fields, field_note = common_fields(first.field_names, second.field_names, names=names)
    if not fields:
        msg = (
            f"the two attributions share no field: {names[0]} has {', '.join(first.field_names)} and "
            f"{names[1]} has {', '.join(second.field_names)}; "
            "compare models that use at least one field of the same name"
        )
        raise ValueError(msg)
    _check_count(k, "k")
    if k > len(fields):
        msg = f"k must be between 1 and the number of common fields ({len(fields)}); got k={k}"
        raise ValueError(msg)

    values_first = first.values[:, [first.field_names.index(name) for name in fields]].astype(np.float64)
    values_second = second.values[:, [second.field_names.index(name) for name in fields]].astype(np.float64)
    overlap = (_top_k_mask(values_first, k) & _top_k_mask(values_second, k)).sum(axis=1) / k

    notes = [field_note, _group_note(first.parameters, second.parameters, fields, names)]
    if first.baseline != second.baseline:
        notes.append(f"different baselines: {first.baseline} ({names[0]}) and {second.baseline} ({names[1]})")
    method = first.method if first.method == second.method else f"{first.method} / {second.method}"
    return AttributionAgreement(
        names=names,
        field_names=tuple(fields),
        rows=np.asarray(first.rows).copy(),
        mean_first=values_first.mean(axis=0),
        mean_second=values_second.mean(axis=0),
        mean_abs_first=np.abs(values_first).mean(axis=0),
        mean_abs_second=np.abs(values_second).mean(axis=0),
        spearman=_row_spearman(values_first, values_second),
        kendall=_row_kendall(values_first, values_second),
        top_k_overlap=overlap.astype(np.float64),
        k=int(k),
        note=_join_notes(*notes),
        output_space=first.output_space,
        method=method,
    )


# --- interaction maps -------------------------------------------------------------


@dataclass(frozen=True)
class InteractionDifference:
    """The global pair maps of two models on their common players, and their difference.

    ``first``, ``second`` and ``difference`` are players × players frames in
    the first model's player order; ``difference`` is ``first - second``,
    with a zero diagonal. Values are in the units of ``output_space``.
    """

    names: tuple[str, str]
    index: str
    statistic: str
    """``"mean_abs"`` (mean |pair value| over samples) or ``"mean"`` (signed mean)."""
    first: pd.DataFrame
    second: pd.DataFrame
    difference: pd.DataFrame
    n_samples: int
    output_space: str
    note: str


def interaction_difference(
    first: Interaction,
    second: Interaction,
    *,
    statistic: PairStatistic = "mean_abs",
    names: Sequence[str] = DEFAULT_NAMES,
) -> InteractionDifference:
    """Subtract the second model's global pair map from the first's, on their common players.

    Parameters
    ----------
    first, second : Interaction
        Interactions of the same rows (same order), index and output space.
    statistic : ``"mean_abs"`` or ``"mean"``
        The global map of each model: :meth:`Interaction.mean_abs` or :meth:`Interaction.mean`.
    names : pair of str
        Names of the two models.

    Returns
    -------
    InteractionDifference

    Raises
    ------
    ValueError
        When the rows, index (for example SII against STII) or output space
        differ, the two share no player, or ``statistic`` is unknown.
    """
    names = _check_names(names)
    if statistic not in PAIR_STATISTICS:
        msg = f"statistic must be one of {', '.join(PAIR_STATISTICS)}; got {statistic!r}"
        raise ValueError(msg)
    _check_same_rows(np.asarray(first.rows), np.asarray(second.rows), "interactions", names)
    if first.index != second.index:
        msg = (
            f"the two interactions use different indices: {first.index} ({names[0]}) versus {second.index} "
            f"({names[1]}); compute both with the same index"
        )
        raise ValueError(msg)
    _check_same_space(first.output_space, second.output_space, names)
    players, player_note = common_fields(first.player_names, second.player_names, names=names)
    if not players:
        msg = (
            f"the two interactions share no player: {names[0]} has {', '.join(first.player_names)} and "
            f"{names[1]} has {', '.join(second.player_names)}"
        )
        raise ValueError(msg)
    player_note = player_note.replace("common field", "common player")

    map_first = (first.mean_abs() if statistic == "mean_abs" else first.mean()).loc[players, players]
    map_second = (second.mean_abs() if statistic == "mean_abs" else second.mean()).loc[players, players]
    if first.baseline != second.baseline:
        baseline_note = f"different baselines: {first.baseline} ({names[0]}) and {second.baseline} ({names[1]})"
    else:
        baseline_note = ""
    return InteractionDifference(
        names=names,
        index=first.index,
        statistic=statistic,
        first=map_first,
        second=map_second,
        difference=map_first - map_second,
        n_samples=first.n_samples,
        output_space=first.output_space,
        note=_join_notes(player_note, _group_note(first.parameters, second.parameters, players, names), baseline_note),
    )


# --- prediction disagreements -----------------------------------------------------


def _prediction_frame(
    rows: np.ndarray, ctr_first: np.ndarray, ctr_second: np.ndarray, names: tuple[str, str]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": rows,
            f"CTR {names[0]}": ctr_first,
            f"CTR {names[1]}": ctr_second,
            "delta": ctr_first - ctr_second,
        }
    )


def disagreements(
    first: Attribution,
    second: Attribution,
    agreement: AttributionAgreement | None = None,
    *,
    by: DisagreementOrder = "prediction",
    n: int | None = 20,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Return the explained rows on which two models disagree most, by predicted CTR or by attribution ranks.

    Parameters
    ----------
    first, second : Attribution
        Attributions of the same rows. Their ``predictions`` are model
        outputs in the attribution's output space, converted to CTRs with the
        sigmoid for ``"logit"`` and taken as they are for ``"probability"``.
    agreement : AttributionAgreement, optional
        :func:`attribution_agreement` of the two; computed with
        ``k = min(3, common fields)`` when missing.
    by : ``"prediction"`` or ``"agreement"``
        ``"prediction"``: largest ``|CTR first - CTR second|`` first.
        ``"agreement"``: lowest Spearman's rho first; rows where rho is
        undefined come last. Ties keep the attribution's row order.
    n : int or None
        Number of rows returned; None returns all.
    names : pair of str, optional
        Names of the two models; default the agreement's, else ``("A", "B")``.

    Returns
    -------
    DataFrame
        Columns ``row``, ``CTR {name}`` per model, ``delta`` (CTR first minus
        CTR second), ``spearman``, ``kendall``, ``top_k_overlap`` and, when
        the attributions carry click labels, ``label``.

    Raises
    ------
    ValueError
        For an unknown ``by``, ``n`` below 1, or attributions (and agreement)
        of different rows or output spaces.
    """
    if by not in ("prediction", "agreement"):
        msg = f"by must be 'prediction' or 'agreement'; got {by!r}"
        raise ValueError(msg)
    _check_count(n, "n", allow_none=True)
    if names is None:
        names = agreement.names if agreement is not None else DEFAULT_NAMES
    names = _check_names(names)
    _check_same_rows(np.asarray(first.rows), np.asarray(second.rows), "attributions", names)
    _check_same_space(first.output_space, second.output_space, names)
    if agreement is None:
        n_common = len(common_fields(first.field_names, second.field_names, names=names)[0])
        agreement = attribution_agreement(first, second, k=max(1, min(3, n_common)), names=names)
    else:
        _check_same_rows(np.asarray(first.rows), agreement.rows, "attributions and the agreement", names)

    frame = _prediction_frame(
        np.asarray(first.rows),
        _ctr(first.predictions, first.output_space),
        _ctr(second.predictions, second.output_space),
        names,
    )
    frame["spearman"] = agreement.spearman
    frame["kendall"] = agreement.kendall
    frame["top_k_overlap"] = agreement.top_k_overlap
    if first.labels is not None:
        frame["label"] = np.asarray(first.labels)
    if by == "prediction":
        order = np.argsort(-np.abs(frame["delta"].to_numpy()), kind="stable")
    else:
        # NaN sorts last in argsort, which puts undefined correlations after every defined one.
        order = np.argsort(frame["spearman"].to_numpy(), kind="stable")
    if n is not None:
        order = order[:n]
    return frame.iloc[order].reset_index(drop=True)


def prediction_disagreements(
    rows: np.ndarray | Sequence[int],
    logits_first: np.ndarray,
    logits_second: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    n: int | None = 20,
    names: Sequence[str] = DEFAULT_NAMES,
) -> pd.DataFrame:
    """Return the rows with the largest ``|CTR first - CTR second|`` of two models' logits on a whole data set.

    Parameters
    ----------
    rows : array of int, shape (n_rows,)
        Data set row of each logit, for example ``np.arange(len(dataset))``.
    logits_first, logits_second : ndarray of shape (n_rows,)
        Logits (log-odds) of the two models, as
        :func:`workbench.training.predict_logits` returns them.
    labels : ndarray of shape (n_rows,), optional
        Click labels, added as the ``label`` column.
    n : int or None
        Number of rows returned; None returns all, sorted.
    names : pair of str
        Names of the two models.

    Returns
    -------
    DataFrame
        Columns ``row``, ``CTR {name}`` per model (sigmoid of the logits),
        ``delta`` (CTR first minus CTR second) and ``label`` when given.
        Rows are sorted by ``|delta|``, largest first, and ties keep the row order.

    Raises
    ------
    ValueError
        When the arrays are not one-dimensional with one value per row, a
        logit is not finite, or ``n`` is below 1.
    """
    names = _check_names(names)
    _check_count(n, "n", allow_none=True)
    rows = np.asarray(rows)
    arrays = {"logits_first": np.asarray(logits_first), "logits_second": np.asarray(logits_second)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    if rows.ndim != 1:
        msg = f"rows must be one-dimensional; got shape {rows.shape}"
        raise ValueError(msg)
    for name, array in arrays.items():
        if array.shape != rows.shape:
            msg = f"{name} must have one value per row, shape {rows.shape}; got {array.shape}"
            raise ValueError(msg)
    for name in ("logits_first", "logits_second"):
        bad = np.flatnonzero(~np.isfinite(arrays[name].astype(np.float64)))
        if bad.size:
            msg = f"{name} has {bad.size} values that are not finite, the first at row {rows[bad[0]]}"
            raise ValueError(msg)

    frame = _prediction_frame(
        rows, _ctr(arrays["logits_first"], "logit"), _ctr(arrays["logits_second"], "logit"), names
    )
    if labels is not None:
        frame["label"] = arrays["labels"]
    order = np.argsort(-np.abs(frame["delta"].to_numpy()), kind="stable")
    if n is not None:
        order = order[:n]
    return frame.iloc[order].reset_index(drop=True)

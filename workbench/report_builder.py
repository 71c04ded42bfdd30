"""Report sections built from a model comparison: overview, metrics, importance, interactions, probes, agreement.

:func:`default_report` is what ``workbench report`` writes. The app's Model
comparison page draws the same sections, so a figure added from the page and
the CLI's report carry the same numbers for the same inputs. Nothing here
imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbench import compare_figures, figures, metrics_figures, probe_figures
from workbench.cohorts import Cohort
from workbench.compare import (
    AttributionAgreement,
    attribution_agreement,
    disagreements,
    interaction_difference,
    prediction_disagreements,
)
from workbench.data import sample_rows
from workbench.explain import Attribution, Interaction
from workbench.model_comparison import (
    ComparedModel,
    compare_metrics,
    explain_models,
    interaction_models,
    overview_table,
)
from workbench.probes import capture_probes, model_probes
from workbench.provenance import ProvenanceError, bundle_fingerprint, provenance
from workbench.report import Report, ReportSection, slugify

DEFAULT_TOP_K = 3
SECTION_KEY_CHARS = 80
"""Section keys (and so table file names) keep up to 80 characters of the title, so both model names fit."""
DISAGREEMENT_ROWS = 20
NEUTRAL_SPREAD = 1e-3
"""Largest distance of a bounded probe's field means from its neutral middle at which the report notes that the ranking means little."""


def _section(*, title: str, **parts: Any) -> ReportSection:
    return ReportSection(title=title, key=slugify(title, max_chars=SECTION_KEY_CHARS), **parts)


def _cohort_spec(cohort: Cohort | None) -> dict[str, Any] | None:
    return None if cohort is None or cohort.is_everything else cohort.to_dict()


def section_provenance(
    models: Sequence[ComparedModel],
    cohort: Cohort | None,
    *,
    method: str | None = None,
    baseline: str | None = None,
    output_space: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    rows: int | None = None,
) -> dict[str, Any]:
    """Return the provenance of the first model's result, with every compared bundle listed under ``compared_bundles``."""
    first = models[0]
    record = provenance(
        first.bundle,
        first.dataset,
        cohort=_cohort_spec(cohort),
        method=method,
        baseline=baseline,
        output_space=output_space,
        parameters=dict(parameters or {}),
        rows=rows,
    )
    if len(models) > 1:
        record["compared_bundles"] = [_bundle_record(model) for model in models]
    return record


def _bundle_record(model: ComparedModel) -> dict[str, Any]:
    try:
        fingerprint = bundle_fingerprint(model.bundle)
    except ProvenanceError:
        fingerprint = None  # the bundle's files are gone, as provenance() records it
    return {"bundle_name": model.bundle.name, "bundle_path": str(model.bundle.path), "bundle_fingerprint": fingerprint}


def _attribution_details(attribution: Attribution) -> dict[str, Any]:
    return {
        "method": attribution.method,
        "baseline": attribution.baseline,
        "output_space": attribution.output_space,
        "rows": attribution.n_samples,
    }


def overview_section(models: Sequence[ComparedModel], cohort: Cohort | None = None) -> ReportSection:
    """Build a table section of the compared models: architecture, parameter count, fields and rows."""
    return _section(
        title="Models",
        tables={"models": overview_table(models)},
        provenance=section_provenance(models, cohort, rows=len(models[0].dataset)),
        text=(
            f"{len(models)} model{'' if len(models) == 1 else 's'} on {len(models[0].dataset):,} rows of "
            f"{models[0].dataset.source or models[0].dataset.name}."
        ),
    )


def metrics_section(
    models: Sequence[ComparedModel],
    cohort: Cohort | None = None,
    *,
    group_field: str | None = None,
    n_bins: int = 10,
    strategy: str = "uniform",
) -> ReportSection:
    """Build the metrics table (AUC, gAUC, log loss, ECE) and one figure with every model's reliability diagram."""
    table, reliability = compare_metrics(models, group_field=group_field, n_bins=n_bins, strategy=strategy)
    bins = pd.concat([frame.assign(model=name) for name, frame in reliability.items()], ignore_index=True)
    return _section(
        title="Metrics and calibration",
        figure=metrics_figures.reliability_diagram(reliability, title="Reliability diagram of each model"),
        tables={"metrics": table.reset_index(), "reliability": bins},
        provenance=section_provenance(
            models,
            cohort,
            parameters={"group_field": group_field, "n_bins": n_bins, "strategy": strategy},
            rows=len(models[0].dataset),
        ),
        text=(
            f"gAUC groups rows by {group_field}; groups with one class are left out. "
            if group_field
            else "No gAUC: no user column was given. "
        )
        + f"ECE over {n_bins} {strategy} bins of predicted CTR."
        + (" AUC and gAUC are empty where the rows hold one class only." if table["auc"].isna().any() else ""),
    )


def importance_section(model: ComparedModel, attribution: Attribution, cohort: Cohort | None = None) -> ReportSection:
    """Build one model's global field importance section: mean |attribution| per field."""
    importance = attribution.mean_abs().rename("mean_abs_attribution").rename_axis("field").reset_index()
    return _section(
        title=f"Field importance of {model.name}",
        figure=figures.importance_bar(attribution),
        tables={"importance": importance},
        provenance=section_provenance([model], cohort, **_attribution_details(attribution)),
    )


def interaction_section(model: ComparedModel, interaction: Interaction, cohort: Cohort | None = None) -> ReportSection:
    """Build one model's global pair map section: mean |SII| per field pair."""
    matrix = pd.DataFrame(interaction.mean_abs(), index=list(interaction.player_names), columns=list(interaction.player_names))
    return _section(
        title=f"Pair interactions of {model.name}",
        figure=figures.interaction_heatmap(interaction, clickable=False),
        tables={"mean_abs_pairs": matrix.rename_axis("player").reset_index()},
        provenance=section_provenance(
            [model],
            cohort,
            method=f"exact {interaction.index}",
            baseline=interaction.baseline,
            output_space=interaction.output_space,
            rows=interaction.n_samples,
        ),
    )


def probe_sections(model: ComparedModel, rows: np.ndarray, cohort: Cohort | None = None) -> list[ReportSection]:
    """Build a section per gate, mask or field weight the model declares, averaged over ``rows``."""
    sections = []
    # The per-field probes of the Gates & masks page: gates, masks and field weights, not pair maps.
    per_field = [p.name for p in model_probes(model.bundle.model) if p.axes and p.axes[-1] == "field" and not p.is_pair_map]
    if not per_field:
        return sections
    capture = capture_probes(model.bundle.model, model.dataset.tensors(rows), names=per_field)
    for name in per_field:
        values = capture[name]
        field_means = values.field_strength()
        strength = pd.DataFrame({"field": list(values.field_names), "mean_value": field_means})
        text = values.probe.description.rstrip(". ") + "."
        if values.probe.value_range is not None:
            neutral = sum(values.probe.value_range) / 2
            spread = float(np.abs(field_means - neutral).max())
            if spread < NEUTRAL_SPREAD:
                text += (
                    f" Every field's mean stays within {spread:.1e} of the neutral {neutral:g}, so on average"
                    " the signal hardly favours one field over another and the ranking carries little meaning."
                )
        sections.append(
            _section(
                title=f"Probe {name} ({values.probe.kind.replace('_', ' ')}) of {model.name}",
                figure=probe_figures.field_strength_bar(values),
                tables={"field_strength": strength},
                provenance=section_provenance([model], cohort, method=f"probe {name}", rows=int(len(rows))),
                text=text,
            )
        )
    return sections


def agreement_sections(
    first: ComparedModel,
    second: ComparedModel,
    attributions: Mapping[str, Attribution],
    cohort: Cohort | None = None,
    *,
    k: int = DEFAULT_TOP_K,
) -> tuple[AttributionAgreement, list[ReportSection]]:
    """Attribution agreement of two models: mean attribution per field and per-sample rank agreement."""
    names = (first.name, second.name)
    agreement = attribution_agreement(attributions[first.name], attributions[second.name], k=k, names=names)
    details = _attribution_details(attributions[first.name])
    record = section_provenance([first, second], cohort, parameters={"k": k}, **details)
    label = f"{first.name} vs {second.name}"
    sections = [
        _section(
            title=f"Mean attribution per field: {label}",
            figure=compare_figures.field_attribution_scatter(agreement),
            tables={"fields": agreement.field_table().reset_index()},
            provenance=record,
            text=agreement.note,
        ),
        _section(
            title=f"Attribution agreement per sample: {label}",
            figure=compare_figures.agreement_histogram(agreement),
            tables={"samples": agreement.sample_table(), "summary": pd.DataFrame([agreement.summary()])},
            provenance=record,
            text=agreement.note,
        ),
    ]
    return agreement, sections


def interaction_difference_section(
    first: ComparedModel,
    second: ComparedModel,
    maps: Mapping[str, Interaction],
    cohort: Cohort | None = None,
) -> ReportSection:
    """Build the section of two models' global SII map difference (first − second) on their common fields."""
    difference = interaction_difference(maps[first.name], maps[second.name], names=(first.name, second.name))
    return _section(
        title=f"Pair interaction difference: {first.name} − {second.name}",
        figure=compare_figures.interaction_difference_heatmap(difference),
        tables={"difference": difference.difference.rename_axis("player").reset_index()},
        provenance=section_provenance(
            [first, second],
            cohort,
            method=f"exact {difference.index}",
            baseline=maps[first.name].baseline,
            output_space=difference.output_space,
            rows=difference.n_samples,
        ),
        text=difference.note,
    )


def disagreement_section(
    first: ComparedModel,
    second: ComparedModel,
    cohort: Cohort | None = None,
    *,
    n: int = DISAGREEMENT_ROWS,
) -> ReportSection:
    """Build the section of the compared rows where the two models' predicted CTRs differ most."""
    names = (first.name, second.name)
    frame = prediction_disagreements(
        np.arange(len(first.dataset)) if first.dataset.source_rows is None else first.dataset.source_rows,
        first.logits,
        second.logits,
        first.dataset.labels,
        n=n,
        names=names,
    )
    return _section(
        title=f"Largest prediction gaps: {first.name} vs {second.name}",
        figure=compare_figures.disagreement_bar(frame, names=names),
        tables={"disagreements": frame},
        provenance=section_provenance([first, second], cohort, parameters={"n": n}, rows=len(first.dataset)),
        text="Rows are numbered as in the data file.",
    )


def attribution_disagreement_table(
    first: ComparedModel,
    second: ComparedModel,
    attributions: Mapping[str, Attribution],
    agreement: AttributionAgreement,
    *,
    n: int = DISAGREEMENT_ROWS,
) -> pd.DataFrame:
    """Return the explained rows whose attributions agree least (lowest Spearman's rho), for the disagreement explorer."""
    return disagreements(
        attributions[first.name], attributions[second.name], agreement, by="agreement", n=n, names=(first.name, second.name)
    )


def default_report(
    models: Sequence[ComparedModel],
    *,
    cohort: Cohort | None = None,
    title: str = "Model comparison",
    explain_rows: int = 200,
    interaction_rows: int = 50,
    seed: int = 0,
    method: str = "auto",
    baseline: str = "zero",
    group_field: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Build the default report: models, metrics, importance, interactions, probes and comparisons.

    Every model explains the same ``explain_rows`` rows (drawn with ``seed``
    from the compared rows), and pair maps use the first ``interaction_rows``
    of them. Comparisons pair the first model with each other one.
    """
    say = progress or (lambda _: None)
    report = Report(title=title)
    report.add(overview_section(models, cohort))
    say("metrics")
    report.add(metrics_section(models, cohort, group_field=group_field))
    rows = sample_rows(len(models[0].dataset), explain_rows, seed)
    say(f"attributions of {rows.size:,} rows with {method}")
    attributions = explain_models(models, rows, method=method, baseline=baseline, seed=seed)
    for model in models:
        report.add(importance_section(model, attributions[model.name], cohort))
    say(f"pair interactions of {min(interaction_rows, rows.size):,} rows")
    maps, notes = interaction_models(models, rows[:interaction_rows], baseline=baseline, seed=seed)
    for model in models:
        if model.name in maps:
            report.add(interaction_section(model, maps[model.name], cohort))
    say("probes")
    for model in models:
        for section in probe_sections(model, rows, cohort):
            report.add(section)
    say("comparisons")
    first = models[0]
    for second in models[1:]:
        _, sections = agreement_sections(first, second, attributions, cohort)
        for section in sections:
            report.add(section)
        if first.name in maps and second.name in maps:
            report.add(interaction_difference_section(first, second, maps, cohort))
        report.add(disagreement_section(first, second, cohort))
    if notes:
        report.sections[0].text += " " + " ".join(notes)
    return report

"""Probe figures: what each heatmap, histogram and bar shows, from hand-made probe values."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import probe_figures
from workbench.probes import ProbeInfo, ProbeValues

FIELDS = ["user", "item", "hour"]


def gate_values() -> ProbeValues:
    info = ProbeInfo("cross_gates", "gate", ("layer", "field"), "test gates", True, (0.0, 1.0))
    values = np.array([[[0.5, 0.6, 0.45], [0.5, 0.5, 0.5]], [[0.5, 0.7, 0.35], [0.5, 0.5, 0.52]]])
    bits = np.repeat(values, 2, axis=-1)
    return ProbeValues(info, values, FIELDS, "mean", bits=bits, bit_fields=np.repeat(np.arange(3), 2))


def test_gate_heatmap_centres_colours_on_neutral():
    figure = probe_figures.field_probe_heatmap(gate_values())

    heatmap = figure.data[0]
    np.testing.assert_allclose(np.asarray(heatmap.z), [[0.5, 0.65, 0.4], [0.5, 0.5, 0.51]])
    assert list(heatmap.y) == ["layer 1", "layer 2"]
    assert (heatmap.zmin + heatmap.zmax) / 2 == pytest.approx(0.5)
    assert heatmap.zmax == pytest.approx(0.65)


def test_sample_heatmap_uses_field_labels():
    figure = probe_figures.field_probe_heatmap(gate_values(), row=1, field_labels=["user = 7", "item = 3", "hour = 9"])

    np.testing.assert_allclose(np.asarray(figure.data[0].z)[0], [0.5, 0.7, 0.35])
    assert list(figure.data[0].x) == ["user = 7", "item = 3", "hour = 9"]
    assert "captured row 1" in figure.layout.title.text


def test_histogram_has_one_trace_per_layer_of_bits():
    figure = probe_figures.probe_histogram(gate_values())

    assert [trace.name for trace in figure.data] == ["layer 1", "layer 2"]
    assert len(figure.data[0].x) == 2 * 6  # 2 rows x 6 bits


def test_strength_bar_ranks_gates_by_distance_from_neutral():
    figure = probe_figures.field_strength_bar(gate_values())

    assert list(figure.data[0].y) == ["item", "user", "hour"]
    np.testing.assert_allclose(figure.data[0].x, [0.075, 0.0, -0.045], atol=1e-12)
    assert "− 0.5 (neutral)" in figure.layout.xaxis.title.text


def test_strength_bar_of_unbounded_values_shows_means():
    info = ProbeInfo("masks", "mask", ("field",), "test masks", True)
    values = ProbeValues(info, np.array([[1.0, -2.0, 0.5], [3.0, -2.0, 0.5]]), FIELDS)

    figure = probe_figures.field_strength_bar(values)

    assert list(figure.data[0].y) == ["user", "hour", "item"]
    np.testing.assert_allclose(figure.data[0].x, [2.0, 0.5, -2.0])


def test_intrinsic_posthoc_heatmaps_blank_the_diagonal():
    intrinsic = np.array([[9.0, 1.0, -2.0], [1.0, 9.0, 3.0], [-2.0, 3.0, 9.0]])
    figure = probe_figures.intrinsic_posthoc_heatmaps(
        intrinsic, -intrinsic, FIELDS, intrinsic_name="a", post_hoc_name="b", spearman=1.0
    )

    left = np.asarray(figure.data[0].z, dtype=float)
    assert np.isnan(np.diag(left)).all()
    assert left[0, 2] == 2.0
    assert "+1.000" in figure.layout.title.subtitle.text


def test_agreement_histogram_counts_undefined_rows():
    figure = probe_figures.agreement_histogram(np.array([0.5, np.nan, 0.7]), title="t")

    assert len(figure.data[0].x) == 2
    assert "1 row left out" in figure.layout.title.subtitle.text


def test_side_by_side_heatmaps_share_a_colour_scale():
    values = gate_values()

    first = probe_figures.field_probe_heatmap(values, row=0, color_rows=[0, 1]).data[0]
    second = probe_figures.field_probe_heatmap(values, row=1, color_rows=[0, 1]).data[0]
    alone = probe_figures.field_probe_heatmap(values, row=0).data[0]

    assert (first.zmin, first.zmax) == (second.zmin, second.zmax)
    assert first.zmax == pytest.approx(0.7)  # row 1's largest gate
    assert alone.zmax == pytest.approx(0.6)

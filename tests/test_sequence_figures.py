"""Sequence figures and view helpers on hand-made histories: summaries, strips, edit deltas, notes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import array
from workbench import sequence_figures
from workbench.app import sequence_views
from workbench.probes import Probe
from workbench.schema import Field, Schema, Vocabulary

PRESENT = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 1]], dtype=bool)
WEIGHTS = np.array([[0.2, 0.3, 0.5, 0.0], [0.6, 0.4, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.3, 0.9]])
ITEMS = np.array(
    [["a", "b", "a", ""], ["b", "b", "", ""], ["", "", "", ""], ["c", "", "a", "b"]],
    dtype=object,
)


def test_recency_counts_back_from_most_recent():
    expected = np.array([[2, 1, 0, -1], [1, 0, -1, -1], [-1, -1, -1, -1], [2, -1, 1, 0]])

    np.testing.assert_array_equal(sequence_figures.recency(PRESENT), expected)


def test_attention_by_position_stored():
    summary = sequence_figures.attention_by_position(WEIGHTS, PRESENT)

    # Position 1 of the last row is empty: its 0 must not pull the mean down.
    assert summary["position"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(summary["mean_weight"], [(0.2 + 0.6 + 0.1) / 3, (0.3 + 0.4) / 2, (0.5 + 0.3) / 2, 0.9])
    assert summary["n_behaviours"].tolist() == [3, 2, 2, 1]


def test_attention_by_position_from_recent():
    summary = sequence_figures.attention_by_position(WEIGHTS, PRESENT, from_recent=True)

    assert summary["position"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(summary["mean_weight"], [(0.5 + 0.4 + 0.9) / 3, (0.3 + 0.6 + 0.3) / 3, (0.2 + 0.1) / 2])
    assert summary["n_behaviours"].tolist() == [3, 3, 2]


def test_attention_by_position_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"weights \(4, 3\) and present \(4, 4\)"):
        sequence_figures.attention_by_position(WEIGHTS[:, :3], PRESENT)


def test_attention_by_item_orders_by_count():
    summary = sequence_figures.attention_by_item(WEIGHTS, PRESENT, ITEMS)

    # b: 4 behaviours, a: 3, c: 1; empty positions hold no item.
    assert summary["item"].tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(summary["mean_weight"], [(0.3 + 0.6 + 0.4 + 0.9) / 4, (0.2 + 0.5 + 0.3) / 3, 0.1])
    assert summary["n_behaviours"].tolist() == [4, 3, 1]
    assert sequence_figures.attention_by_item(WEIGHTS, PRESENT, ITEMS, top_n=2)["item"].tolist() == ["b", "a"]
    with pytest.raises(ValueError, match="top_n must be at least 1; got 0"):
        sequence_figures.attention_by_item(WEIGHTS, PRESENT, ITEMS, top_n=0)


def test_behaviour_strip_skips_empty_positions():
    attribution = np.array([0.05, 0.0, -0.2, 0.4])
    figure = sequence_figures.behaviour_strip(
        ITEMS[3], PRESENT[3], attention=WEIGHTS[3], attribution=attribution, title="row 3"
    )

    assert [trace.name for trace in figure.data] == ["attention", "attribution"]
    assert list(figure.data[0].x) == ["0: c", "2: a", "3: b"]
    np.testing.assert_allclose(figure.data[0].y, [0.1, 0.3, 0.9])
    np.testing.assert_allclose(figure.data[1].y, [0.05, -0.2, 0.4])
    assert list(figure.data[1].text) == ["+0.050", "-0.200", "+0.400"]
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles == ["attention (weight)", "attribution (logit)"]


def test_behaviour_strip_needs_a_signal():
    with pytest.raises(ValueError, match="needs attention weights, attributions or both"):
        sequence_figures.behaviour_strip(ITEMS[0], PRESENT[0], title="row 0")


def test_position_chart_carries_counts():
    summary = sequence_figures.attention_by_position(WEIGHTS, PRESENT)
    figure = sequence_figures.attention_by_position_bar(summary, from_recent=False, n_samples=4)

    np.testing.assert_allclose(array(figure.to_plotly_json()["data"][1]["y"]), [3, 2, 2, 1])
    assert "over 4 samples" in figure.layout.title.text
    assert figure.layout.yaxis.title.text == "mean attention (weight)"


def test_edit_deltas_bar_numbers_edits():
    edits = pd.DataFrame(
        {
            "edit": ["drop position(s) 1", "reverse the order of the history"],
            "prediction_before": [0.30, 0.30],
            "prediction_after": [0.25, 0.32],
            "delta": [-0.05, 0.02],
        }
    )
    figure = sequence_figures.edit_deltas_bar(edits)

    assert list(figure.data[0].y) == ["1. drop position(s) 1", "2. reverse the order of the history"]
    np.testing.assert_allclose(figure.data[0].x, [-0.05, 0.02])
    assert list(figure.data[0].text) == ["-5.00 pp", "+2.00 pp"]


def _probe(description: str) -> Probe:
    return Probe("target_attention", "target_attention", ("position",), description, modules=("weights",))


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("DIEN weight (softmax over the present behaviours, sums to 1)", True),
        ("DIN weight; not normalised (no softmax), so their sum follows the interest", False),
        ("QIN sparse weight ReLU(q k); not normalised", False),
        ("a weight per behaviour", None),
    ],
)
def test_softmax_read_from_description(description, expected):
    assert sequence_views.is_softmax_normalised(_probe(description)) is expected


def test_normalisation_note_gives_measured_sum():
    present = np.array([True, True, False])
    note = sequence_views.normalisation_note(_probe("softmax over behaviours"), np.array([0.25, 0.75, 0.0]), present)
    assert "sum to 1 per sample (this row: 1.0000)" in note
    note = sequence_views.normalisation_note(_probe("not normalised"), np.array([-0.5, -0.25, 3.0]), present)
    assert "need not sum to 1 (this row: -0.7500)" in note


def test_insert_choices_most_frequent_first():
    class Model:
        pairs = [("history", "item")]
        schema = Schema(
            [Field("item", "categorical"), Field("history", "sequence", Vocabulary(["x", "y", "z"], [2, 9, 5]), max_length=3)]
        )

    assert sequence_views.insert_choices(Model()) == (["y", "z", "x"], 3)
    assert sequence_views.insert_choices(Model(), limit=2) == (["y", "z"], 3)

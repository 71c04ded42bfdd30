"""Property-based fuzz tests: every file and spec parser either parses its input or raises the project's error.

Each test starts from a valid input: a real bundle manifest, schema, feature map,
data file, cohort or report section. Hypothesis mutates it (keys dropped, values
replaced by wrong types, huge, negative or non-finite numbers, unicode and nested
junk) or replaces it by random bytes, and the test feeds it to the parser. The
only exceptions allowed are the parser's own error types. Any other exception
fails the test with the input that caused it.

The runs are derandomized, so every run checks the same inputs.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from workbench.bundle import MANIFEST_NAME, BundleError, load_bundle, read_manifest, save_bundle
from workbench.cohorts import Cohort, CohortError, load_cohorts, parse_cohort
from workbench.data import DataError, load_dataset, read_feature_map, read_frame, read_schema_spec
from workbench.report import Report, ReportError, ReportSection
from workbench.schema import Schema, SchemaError
from workbench.zoo import build_model

REPO_ROOT = Path(__file__).resolve().parents[1]
LR_BUNDLE = REPO_ROOT / "models" / "ad_clicks_lr"
AD_CLICKS_DIR = REPO_ROOT / "sample_data" / "ad_clicks"

EXAMPLES = 1000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
TINY_VOCABULARY = 3
"""Values kept per vocabulary of the LR schema, so that rebuilding the model for each example stays cheap."""


# ---------------------------------------------------------------- strategies

SPECIAL_NUMBERS = st.sampled_from(
    [0, -1, 1, 2, 10**6, 10**30, -(10**30), 2**63, 10**400, 0.5, -0.0, 1e308, -1e308, math.nan, math.inf, -math.inf]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | SPECIAL_NUMBERS
    | st.text(max_size=12)
    | st.sampled_from(["", " ", "\x00", "é", "日本", "\ud800", "categorical", "numeric", "sequence", "dense", "label"])
)
JUNK = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)


def _mutate_once(draw: Callable[[Any], Any], value: Any) -> Any:
    """Walk to a random spot of a JSON value and replace, drop or keep descending."""
    if isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value, key=str)))
        action = draw(st.sampled_from(["descend", "descend", "replace", "delete", "add"]))
        if action == "descend":
            value[key] = _mutate_once(draw, value[key])
        elif action == "replace":
            value[key] = draw(JUNK)
        elif action == "delete":
            del value[key]
        else:
            value[draw(st.text(max_size=8))] = draw(JUNK)
        return value
    if isinstance(value, list) and value:
        position = draw(st.integers(0, len(value) - 1))
        action = draw(st.sampled_from(["descend", "descend", "replace", "delete", "append"]))
        if action == "descend":
            value[position] = _mutate_once(draw, value[position])
        elif action == "replace":
            value[position] = draw(JUNK)
        elif action == "delete":
            del value[position]
        else:
            value.append(draw(JUNK))
        return value
    return draw(JUNK)


@st.composite
def mutated(draw: Callable[[Any], Any], base: Any, max_mutations: int = 3) -> Any:
    """A deep copy of the JSON value ``base`` with 0 to ``max_mutations`` random changes."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, max_mutations))):
        value = _mutate_once(draw, value)
    return value


@st.composite
def mutated_text(draw: Callable[[Any], Any], text: str) -> str:
    """``text`` with a few characters inserted, deleted or replaced."""
    characters = list(text)
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(characters)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(["\t", ",", ":", "\n", '"', "\x00", "é", "-1", "nan", "1e999", " "]) | st.text(max_size=3))
        if action == "insert" or position == len(characters):
            characters[position:position] = list(piece)
        elif action == "delete":
            del characters[position]
        else:
            characters[position : position + 1] = list(piece)
    return "".join(characters)


def write_bytes_or_text(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``content`` to ``path``. UTF-8 keeps lone surrogates as bytes, other encodings replace what they cannot encode."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace"))
    return path


def dump_json(value: Any) -> str:
    """JSON text of ``value``, with NaN and infinities written as Python's ``json`` module writes them."""
    return json.dumps(value, allow_nan=True)


def file_contents(base_text: str) -> st.SearchStrategy[str | bytes]:
    """Mutated versions of ``base_text`` (about half of the examples) plus arbitrary text and bytes."""
    return st.one_of(mutated_text(base_text), mutated_text(base_text), st.text(max_size=200), st.binary(max_size=200))


def parse_or_reject(parse: Callable[[], Any], errors: type[Exception] | tuple[type[Exception], ...]) -> Any:
    """Return ``parse()``, or None when it raises one of ``errors``. Any other exception propagates.

    Each outcome is recorded as a hypothesis event, so ``pytest --hypothesis-show-statistics`` shows how many
    examples got past the parser's checks.
    """
    try:
        result = parse()
    except errors as err:
        event(f"rejected with {type(err).__name__}")
        return None
    event("parsed")
    return result


# ---------------------------------------------------------------- fixtures


def _tiny_schema_dict(schema: dict[str, Any]) -> dict[str, Any]:
    """The LR schema with every vocabulary cut to its first values."""
    tiny = copy.deepcopy(schema)
    for spec in tiny["fields"]:
        if "vocabulary" in spec:
            spec["vocabulary"] = spec["vocabulary"][:TINY_VOCABULARY]
            spec["counts"] = spec["counts"][:TINY_VOCABULARY]
    return tiny


@pytest.fixture(scope="module")
def lr_manifest() -> dict[str, Any]:
    return json.loads((LR_BUNDLE / MANIFEST_NAME).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tiny_schema_dict(lr_manifest: dict[str, Any]) -> dict[str, Any]:
    return _tiny_schema_dict(lr_manifest["schema"])


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, lr_manifest: dict[str, Any], tiny_schema_dict) -> Path:
    """A loadable LR bundle with the fields of models/ad_clicks_lr and three values per vocabulary."""
    schema = Schema.from_dict(tiny_schema_dict)
    model = build_model(lr_manifest["architecture"], schema, **lr_manifest["hyperparameters"])
    path = tmp_path_factory.mktemp("fuzz-bundle") / "tiny-lr"
    return save_bundle(
        model,
        path,
        name=lr_manifest["name"],
        metrics=lr_manifest["metrics"],
        training=lr_manifest["training"],
        data=lr_manifest["data"],
    )


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-work")


@pytest.fixture(scope="module")
def sample_frame() -> pd.DataFrame:
    """Five rows of the ad-click test split, as read from Parquet."""
    return read_frame(AD_CLICKS_DIR / "test.parquet", max_rows=5)


def test_tiny_bundle_loads(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.architecture == "lr"
    assert bundle.schema.field_names[0] == "user_id"
    assert len(bundle.schema["gender"].vocabulary) == TINY_VOCABULARY + 2


# ---------------------------------------------------------------- bundles


@FUZZ
@given(data=st.data())
def test_read_manifest_fuzzed(tmp_path_factory, lr_manifest: dict[str, Any], data: st.DataObject) -> None:
    # The real 350 kB LR manifest, mutated at its top level and one level below.
    folder = tmp_path_factory.getbasetemp() / "fuzz-manifest"
    folder.mkdir(exist_ok=True)
    shallow = {key: value if not isinstance(value, dict) else dict(value) for key, value in lr_manifest.items()}
    shallow["schema"] = {"label": lr_manifest["schema"]["label"], "fields": list(lr_manifest["schema"]["fields"])}
    choice = data.draw(st.sampled_from(["mutated", "bytes", "text"]))
    if choice == "mutated":
        content: str | bytes = dump_json(data.draw(mutated(shallow, max_mutations=2)))
    elif choice == "bytes":
        content = data.draw(st.binary(max_size=300))
    else:
        content = data.draw(mutated_text('{"format": "ctr-workbench-bundle", "format_version": 1, "architecture": "lr"}'))
    write_bytes_or_text(folder / MANIFEST_NAME, content)
    manifest = parse_or_reject(lambda: read_manifest(folder), BundleError)
    if manifest is None:
        return
    assert isinstance(manifest, dict)


@FUZZ
@given(data=st.data())
def test_load_bundle_fuzzed_manifest(tiny_bundle: Path, work_dir: Path, data: st.DataObject) -> None:
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    folder = work_dir / "bundle"
    folder.mkdir(exist_ok=True)
    weights = tiny_bundle / "weights.safetensors"
    if not (folder / weights.name).exists():
        (folder / weights.name).write_bytes(weights.read_bytes())
    # Aim most mutations at the parts load_bundle interprets: schema, hyperparameters, architecture, weights.
    target = data.draw(st.sampled_from(["schema", "hyperparameters", "architecture", "weights", "anywhere"]))
    if target == "anywhere":
        manifest = data.draw(mutated(manifest))
    else:
        part = data.draw(mutated({target: manifest.pop(target)}))
        manifest.update(part if isinstance(part, dict) else {target: part})
    write_bytes_or_text(folder / MANIFEST_NAME, dump_json(manifest))
    bundle = parse_or_reject(lambda: load_bundle(folder), (BundleError, SchemaError))
    if bundle is None:
        return
    assert bundle.architecture in ("lr", "LR") or bundle.architecture.lower() == "lr"


# ---------------------------------------------------------------- schemas


SCHEMA_BASE = {
    "label": "click",
    "fields": [
        {"name": "device", "kind": "categorical", "vocabulary": ["mobile", "desktop"], "counts": [3, 2]},
        {"name": "age", "kind": "numeric", "mean": 30.0, "std": 5.0},
        {"name": "history", "kind": "sequence", "max_length": 4, "separator": "|", "vocabulary": ["a", "b"], "counts": [1, 1]},
        {"name": "vector", "kind": "dense", "dim": 3},
    ],
    "extra": {"source": "fuzz"},
}


@FUZZ
@given(spec=mutated(SCHEMA_BASE) | JUNK)
def test_schema_from_dict_fuzzed(spec: Any) -> None:
    schema = parse_or_reject(lambda: Schema.from_dict(spec), SchemaError)
    if schema is None:
        return
    assert len(schema.fields) >= 1
    assert all(isinstance(name, str) for name in schema.field_names)
    for f in schema.fields:
        assert math.isfinite(f.mean)
        assert math.isfinite(f.std)
        assert f.std > 0


@FUZZ
@given(content=mutated(SCHEMA_BASE).map(dump_json) | file_contents(dump_json(SCHEMA_BASE)))
def test_read_schema_spec_fuzzed(work_dir: Path, content: str | bytes) -> None:
    path = write_bytes_or_text(work_dir / "schema.json", content)
    parse_or_reject(lambda: read_schema_spec(path), (DataError, SchemaError))


# ---------------------------------------------------------------- data files


FEATURE_MAP_TEXT = "index\tfield\traw_value\n1\tdevice\tmobile\n2\tdevice\tdesktop\n3\tos\tandroid\n"


@FUZZ
@given(content=file_contents(FEATURE_MAP_TEXT))
def test_read_feature_map_fuzzed(work_dir: Path, content: str | bytes) -> None:
    path = write_bytes_or_text(work_dir / "feature_map.tsv", content)
    names = parse_or_reject(lambda: read_feature_map(path), DataError)
    if names is None:
        return
    assert all(isinstance(index, int) for index in names)


def _csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


@FUZZ
@given(data=st.data())
def test_read_frame_csv_fuzzed(work_dir: Path, sample_frame: pd.DataFrame, data: st.DataObject) -> None:
    base = _csv_text(sample_frame)
    suffix = data.draw(st.sampled_from([".csv", ".tsv"]))
    encoding = data.draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    content = data.draw(file_contents(base if suffix == ".csv" else base.replace(",", "\t")))
    path = write_bytes_or_text(work_dir / f"rows{suffix}", content, encoding)
    frame = parse_or_reject(lambda: read_frame(path), DataError)
    if frame is None:
        return
    assert isinstance(frame, pd.DataFrame)


@FUZZ
@given(data=st.data())
def test_read_frame_gzip_fuzzed(work_dir: Path, sample_frame: pd.DataFrame, data: st.DataObject) -> None:
    # Gzip files cut short or with flipped bytes, as an interrupted download leaves them.
    suffix = data.draw(st.sampled_from([".csv.gz", ".tsv.gz", ".libfm.gz"]))
    base = LIBFFM_TEXT if suffix == ".libfm.gz" else _csv_text(sample_frame)
    text = data.draw(st.just(base) | mutated_text(base))
    compressed = bytearray(gzip.compress(text.encode("utf-8", errors="surrogatepass"), mtime=0))
    damage = data.draw(st.sampled_from(["none", "cut", "flip"]))
    if damage == "cut":
        compressed = compressed[: data.draw(st.integers(0, len(compressed) - 1))]
    elif damage == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            position = data.draw(st.integers(0, len(compressed) - 1))
            compressed[position] ^= data.draw(st.integers(1, 255))
    path = write_bytes_or_text(work_dir / f"rows{suffix}", bytes(compressed))
    frame = parse_or_reject(lambda: read_frame(path), DataError)
    if frame is None:
        return
    assert isinstance(frame, pd.DataFrame)


LIBFM_TEXT = "1 1:1 3:1\n0 2:1\n-1 1:1\n"
LIBFFM_TEXT = "1 0:5:1 1:7:1\n0 0:6:1\n"
LIBFM_NUMBERS = st.sampled_from(["0", "1", "2", "3", "-1", "1.0", "+1", "nan", "inf", "1e999", "", "x", "9" * 30]) | st.integers().map(str)


@st.composite
def libfm_lines(draw: Callable[[Any], Any]) -> str:
    """libfm or libffm rows built from plausible and broken labels, indices and values."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        tokens = [draw(LIBFM_NUMBERS)]
        for _ in range(draw(st.integers(0, 3))):
            parts = draw(st.lists(LIBFM_NUMBERS, min_size=1, max_size=4))
            tokens.append(":".join(parts))
        lines.append(draw(st.sampled_from([" ", "\t", "  "])).join(tokens))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


@FUZZ
@given(data=st.data())
def test_read_frame_libfm_fuzzed(work_dir: Path, data: st.DataObject) -> None:
    folder = work_dir / "libfm"
    folder.mkdir(exist_ok=True)
    with_map = data.draw(st.booleans())
    content = data.draw(libfm_lines() | file_contents(LIBFM_TEXT if with_map else LIBFFM_TEXT))
    path = write_bytes_or_text(folder / "rows.libfm", content)
    feature_map = None
    if with_map:
        map_content = data.draw(st.just(FEATURE_MAP_TEXT) | file_contents(FEATURE_MAP_TEXT))
        feature_map = write_bytes_or_text(folder / "map.tsv", map_content)
    frame = parse_or_reject(lambda: read_frame(path, feature_map=feature_map), DataError)
    if frame is None:
        return
    assert set(frame["label"]) <= {0, 1}


@FUZZ
@given(data=st.data())
def test_load_dataset_fuzzed(
    work_dir: Path, tiny_schema_dict: dict[str, Any], sample_frame: pd.DataFrame, data: st.DataObject
) -> None:
    schema = Schema.from_dict(tiny_schema_dict)
    frame = sample_frame.astype(str)
    cells = st.sampled_from(["", "nan", "inf", "-1e999", "1e999", "<OOV>", "\x00", "a|b||", "mobile"]) | st.text(max_size=8)
    for _ in range(data.draw(st.integers(0, 6))):
        row = data.draw(st.integers(0, len(frame) - 1))
        column = data.draw(st.sampled_from(list(frame.columns)))
        frame.loc[row, column] = data.draw(cells)
    if data.draw(st.booleans()):
        frame = frame.drop(columns=data.draw(st.sampled_from(list(frame.columns))))
    text = _csv_text(frame)
    content = data.draw(st.just(text) | mutated_text(text))
    path = write_bytes_or_text(work_dir / "dataset.csv", content)
    dataset = parse_or_reject(lambda: load_dataset(path, schema), (DataError, SchemaError))
    if dataset is None:
        return
    assert set(np.unique(dataset.labels)) <= {0.0, 1.0}
    assert len(dataset) == len(dataset.raw)


# ---------------------------------------------------------------- cohorts


COHORT_BASE = Cohort(
    name="mobile clickers",
    values={"device": ("mobile",)},
    ranges={"user_age": (18.0, 40.0)},
    score_range=(0.1, 0.9),
    label=1,
    correct=True,
    threshold=0.4,
    oov="with",
    oov_fields=("device",),
    frequency_field="site",
    frequency_buckets=("head", "tail"),
).to_dict()


@FUZZ
@given(spec=st.one_of(mutated(COHORT_BASE, max_mutations=1), mutated(COHORT_BASE), JUNK))
def test_cohort_from_dict_fuzzed(spec: Any) -> None:
    cohort = parse_or_reject(lambda: Cohort.from_dict(spec), CohortError)
    if cohort is None:
        return
    assert isinstance(cohort.name, str)
    assert Cohort.from_dict(cohort.to_dict()) == cohort


@FUZZ
@given(data=st.data())
@example(data=None)
def test_parse_cohort_fuzzed(work_dir: Path, data: st.DataObject | None) -> None:
    if data is None:
        text = "[" * 100_000 + "]" * 100_000
    else:
        choice = data.draw(st.sampled_from(["json", "list", "file", "text"]))
        if choice == "json":
            text = dump_json(data.draw(mutated(COHORT_BASE)))
        elif choice == "list":
            text = dump_json(data.draw(mutated([COHORT_BASE, {**COHORT_BASE, "name": "other"}])))
        elif choice == "file":
            content = data.draw(mutated([COHORT_BASE]).map(dump_json) | file_contents(dump_json([COHORT_BASE])))
            path = write_bytes_or_text(work_dir / "cohorts.json", content)
            text = str(path) + data.draw(st.sampled_from(["", "#mobile clickers", "#", "#missing"]))
        else:
            text = data.draw(st.text(max_size=300) | st.just("x" * 5000) | st.just("a\x00b"))
    cohort = parse_or_reject(lambda: parse_cohort(text), CohortError)
    if cohort is None:
        return
    assert isinstance(cohort, Cohort)


@FUZZ
@given(text=mutated([COHORT_BASE, {**COHORT_BASE, "name": "other"}]).map(dump_json) | st.text(max_size=100))
def test_load_cohorts_fuzzed(text: str) -> None:
    cohorts = parse_or_reject(lambda: load_cohorts(text), CohortError)
    if cohorts is None:
        return
    assert len({cohort.name for cohort in cohorts}) == len(cohorts)


# ---------------------------------------------------------------- reports


def _section_dicts() -> list[dict[str, Any]]:
    figure = go.Figure(go.Bar(x=["a", "b"], y=np.array([1.0, 2.0])))
    table = pd.DataFrame({"field": ["a", "b"], "value": [1.0, np.nan], "count": [3, 4]})
    with_figure = ReportSection("Importance", figure=figure, provenance={"seed": 0}, tables={"values": table}, text="Two bars")
    tables_only = ReportSection(
        "Tables only",
        provenance={"model": "lr", "rows": [1, 2]},
        tables={"indexed": table.set_index("field")},
        key="tables-only",
    )
    return [with_figure.to_dict(), tables_only.to_dict()]


SECTION_BASES = _section_dicts()


@FUZZ
@given(data=st.data())
def test_report_section_from_dict_fuzzed(data: st.DataObject) -> None:
    # Most examples use the section without a figure, because rebuilding the one with a figure took about 16 ms
    # per call on the 2-core test machine, against 0.4 ms without.
    base = SECTION_BASES[data.draw(st.sampled_from([0, 1, 1, 1]))]
    spec = data.draw(mutated(base) | JUNK)
    section = parse_or_reject(lambda: ReportSection.from_dict(spec), ReportError)
    if section is None:
        return
    assert isinstance(section.key, str)


def _table_spec(columns: Any, dtypes: Any, data: Any, index: Any) -> dict[str, Any]:
    """The tables-only section with its table replaced by the given parts."""
    spec = copy.deepcopy(SECTION_BASES[1])
    spec["tables"] = {"broken": {"columns": columns, "dtypes": dtypes, "data": data, "index": index}}
    return spec


@pytest.mark.parametrize(
    "spec",
    [
        _table_spec(["a"], ["int64"], [[10**30]], {"range": [0, 1, 1]}),
        _table_spec(["a"], ["int64"], [[1]], {"range": [0, 10**30, 1]}),
        _table_spec(["a"], [None], [[1]], {"range": [0, 1, 1]}),
        _table_spec(["a"], ["int64"], None, {"range": [0, 1, 1]}),
        _table_spec(["a"], ["datetime64[zz]"], [["2020"]], {"range": [0, 1, 1]}),
        _table_spec(["a"], ["int64"], [[1]], {"range": [0, 1, 0]}),
        _table_spec(["a"], ["int64"], [[1]], ["range"]),
        _table_spec([["a"]], ["int64"], [[1]], {"range": [0, 1, 1]}),
    ],
    ids=["huge-cell", "huge-range", "dtype-null", "data-null", "bad-unit", "zero-step", "index-list", "list-column"],
)
def test_report_section_broken_table(spec: dict[str, Any]) -> None:
    with pytest.raises(ReportError, match="table tables-only/broken in the stored section is malformed"):
        ReportSection.from_dict(spec)


@FUZZ
@given(spec=mutated({"title": "Report", "sections": [SECTION_BASES[1]]}, max_mutations=4) | JUNK)
def test_report_from_dict_fuzzed(spec: Any) -> None:
    report = parse_or_reject(lambda: Report.from_dict(spec), ReportError)
    if report is None:
        return
    assert isinstance(report.title, str)


# ---------------------------------------------------------------- inputs the fuzz tests found


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_length": "four"}, "'max_length' 'four'; it must be a whole number"),
        ({"max_length": math.inf}, "'max_length' inf; it must be a whole number"),
        ({"name": ["history"]}, "field names must be non-empty strings"),
        ({"kind": ["sequence"]}, "unknown kind"),
        ({"vocabulary": None}, "invalid 'vocabulary': it must be a list of strings"),
        ({"counts": ["1", "1"]}, "invalid 'counts'"),
        ({"std": math.nan}, "'std' nan; it must be a finite number"),
        ({"std": 0}, "the standard deviation must be a finite number above 0"),
        ({"std": 10**400}, "'std' 1000000000"),
        ({"dim": 2.5}, "'dim' 2.5; it must be a whole number"),
        ({"separator": ""}, "it must be a non-empty string"),
    ],
)
def test_schema_field_wrong_type_rejected(change: dict[str, Any], message: str) -> None:
    spec = copy.deepcopy(SCHEMA_BASE)
    spec["fields"][2].update(change)
    if "std" in change:
        spec["fields"][1].update(change)
    with pytest.raises(SchemaError, match=re.escape(message)):
        Schema.from_dict(spec)


def test_schema_vocabulary_numbers_read_as_text() -> None:
    spec = copy.deepcopy(SCHEMA_BASE)
    spec["fields"][0]["vocabulary"] = [1, 2.5]
    schema = Schema.from_dict(spec)
    assert schema["device"].vocabulary.values == ["1", "2.5"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("architecture", None, "has architecture None; it must be the name of a native architecture"),
        ("weights", [], "has a 'weights' entry of type list; it must be a JSON object"),
        ("hyperparameters", None, "has a 'hyperparameters' entry of type NoneType"),
        ("schema", "click", "has a 'schema' entry of type str"),
    ],
)
def test_manifest_wrong_type_rejected(tiny_bundle: Path, work_dir: Path, key: str, value: Any, message: str) -> None:
    folder = work_dir / f"manifest-{key}"
    folder.mkdir()
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest[key] = value
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match=re.escape(message)):
        read_manifest(folder)


def test_manifest_schema_without_vocabulary_rejected(tiny_bundle: Path, work_dir: Path) -> None:
    folder = work_dir / "manifest-unfitted"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes((tiny_bundle / "weights.safetensors").read_bytes())
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    del manifest["schema"]["fields"][0]["vocabulary"]
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="cannot rebuild the model .*: the schema has no vocabulary for the field[(]s[)] user_id$"):
        load_bundle(folder)


def test_manifest_layer_size_overflow_rejected(tiny_bundle: Path, work_dir: Path) -> None:
    folder = work_dir / "manifest-overflow"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes((tiny_bundle / "weights.safetensors").read_bytes())
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["architecture"] = "dnn"
    manifest["hyperparameters"] = {"embedding_dim": 2**62}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="cannot rebuild the model described in .*overflowed"):
        load_bundle(folder)


def test_manifest_deep_nesting_rejected(work_dir: Path) -> None:
    folder = work_dir / "manifest-nested"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(BundleError, match="is not valid JSON"):
        read_manifest(folder)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("name", None, "cohort key 'name' must be a string; got None"),
        ("name", [], "cohort key 'name' must be a string; got []"),
        ("oov", ["with"], "cohort key 'oov' must be a string"),
        ("frequency_field", ["site"], "cohort key 'frequency_field' must be a field name or null"),
        ("oov_fields", "device", "cohort key 'oov_fields' must be a list of strings; got 'device'"),
        ("frequency_buckets", [{"head": 1}], "cohort key 'frequency_buckets' must be a list of strings"),
    ],
)
def test_cohort_wrong_type_rejected(key: str, value: Any, message: str) -> None:
    with pytest.raises(CohortError, match=re.escape(message)):
        Cohort.from_dict({**COHORT_BASE, key: value})


def test_cohort_huge_bound_rejected() -> None:
    with pytest.raises(CohortError, match="invalid cohort 'mobile clickers': int too large to convert to float"):
        Cohort.from_dict({**COHORT_BASE, "ranges": {"user_age": [0, 10**400]}})


@pytest.mark.parametrize("text", ["a\x00b", "x" * 5000, "x" * 5000 + "#name"], ids=["nul-byte", "long-name", "long-name-hash"])
def test_parse_cohort_impossible_path_rejected(text: str) -> None:
    with pytest.raises(CohortError, match="is neither JSON text nor an existing JSON file"):
        parse_cohort(text)


def test_parse_cohort_latin1_file_rejected(work_dir: Path) -> None:
    path = work_dir / "latin1-cohorts.json"
    path.write_bytes(json.dumps([{**COHORT_BASE, "name": "Köln"}], ensure_ascii=False).encode("latin-1"))
    with pytest.raises(CohortError, match="could not read the cohort file .* as UTF-8 text"):
        parse_cohort(str(path))


def test_report_section_nested_figure_rejected() -> None:
    spec = {**SECTION_BASES[1], "figure": "[" * 100_000 + "]" * 100_000}
    with pytest.raises(ReportError, match="figure of stored section 'tables-only' is not valid plotly JSON"):
        ReportSection.from_dict(spec)


def test_report_section_nested_provenance_rejected() -> None:
    provenance: dict[str, Any] = {}
    for _ in range(10_000):
        provenance = {"inner": provenance}
    with pytest.raises(ReportError, match="provenance of section 'tables-only' is not plain JSON"):
        ReportSection.from_dict({**SECTION_BASES[1], "provenance": provenance})


def test_report_sections_not_list_rejected() -> None:
    with pytest.raises(ReportError, match="a list of 'sections'"):
        Report.from_dict({"title": "Report", "sections": None})


@pytest.mark.parametrize("suffix", [".csv.gz", ".libfm.gz"])
@pytest.mark.parametrize("keep", [6, 30], ids=["cut-in-header", "cut-in-data"])
def test_read_frame_truncated_gzip_rejected(work_dir: Path, suffix: str, keep: int) -> None:
    text = "device,label\n" + "mobile,1\n" * 500 if suffix == ".csv.gz" else LIBFFM_TEXT * 200
    path = work_dir / f"truncated-{keep}{suffix}"
    path.write_bytes(gzip.compress(text.encode("utf-8"))[:keep])
    with pytest.raises(DataError, match="could not read .*: Compressed file ended before the end-of-stream marker"):
        read_frame(path)

"""The on-disk result cache: hits, misses on changed bytes or parameters, corrupted entries and killed writers."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from workbench import cli
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain import explain
from workbench.explain.exact import exact_indices
from workbench.explain.result import Attribution
from workbench.result_cache import ResultCache, ResultCacheError, ResultCacheWarning, result_key

REPO_ROOT = Path(__file__).resolve().parents[1]
ROWS = np.arange(4)


@pytest.fixture
def inputs(tmp_path, tiny_bundle_path, tiny_data_dir):
    """A private copy of the tiny bundle and test file, so that tests can change their bytes."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_path, bundle)
    data = tmp_path / "test.parquet"
    shutil.copyfile(tiny_data_dir / "ad_clicks" / "test.parquet", data)
    return bundle, data


class CountingCompute:
    """Exact Shapley values of the first rows, counting how often they are computed."""

    def __init__(self, bundle: Path, data: Path) -> None:
        self.bundle = load_bundle(bundle)
        self.dataset = load_dataset(data, self.bundle.schema, max_rows=50)
        self.calls = 0

    def __call__(self) -> Attribution:
        self.calls += 1
        return explain(self.bundle.model, self.dataset, ROWS, method="exact_shapley")


def assert_same_result(expected, actual) -> None:
    """Check that two results have the same type, equal arrays (and dtypes), frames and plain values."""
    assert type(actual) is type(expected)
    if dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            assert_same_result(getattr(expected, field.name), getattr(actual, field.name))
    elif isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype
        np.testing.assert_array_equal(actual, expected)
    elif isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(actual, expected)
    else:
        assert actual == expected


def flip_byte(path: Path, position: int) -> None:
    payload = bytearray(path.read_bytes())
    payload[position] ^= 0xFF
    path.write_bytes(bytes(payload))


def key_of(bundle: Path, data: Path, **parameters) -> object:
    return result_key("test.exact", bundle=bundle, data=data, parameters={"method": "exact_shapley", **parameters})


# --- hits and misses --------------------------------------------------------------------------------


def test_hit_returns_equal_result(tmp_path, inputs):
    bundle, data = inputs
    compute = CountingCompute(bundle, data)
    cache = ResultCache(tmp_path / "cache")
    key = key_of(bundle, data)

    first = cache.get_or_compute(key, compute)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = cache.get_or_compute(key, compute)

    assert compute.calls == 1
    assert_same_result(first, second)
    assert second.values.shape == (4, len(first.field_names))
    assert second.raw_values.shape == (4, len(first.field_names))


def test_exact_result_round_trip(tmp_path, inputs):
    bundle, data = inputs
    loaded = load_bundle(bundle)
    dataset = load_dataset(data, loaded.schema, max_rows=20)
    user = ["user_id", "gender", "user_age"]
    groups = {"user": user, "rest": [name for name in loaded.schema.field_names if name not in user]}
    result = exact_indices(loaded.model, dataset, np.arange(2), players=groups)
    cache = ResultCache(tmp_path / "cache")
    key = key_of(bundle, data, kind="exact_indices")

    cache.store(key, result)

    assert_same_result(result, cache.load(key))


@pytest.mark.parametrize("changed", ["weights", "manifest", "data"])
def test_changed_byte_misses_as_stale(tmp_path, inputs, changed):
    bundle, data = inputs
    compute = CountingCompute(bundle, data)
    cache = ResultCache(tmp_path / "cache")
    before = key_of(bundle, data)
    cache.get_or_compute(before, compute)

    target = {"weights": bundle / "weights.safetensors", "manifest": bundle / "manifest.json", "data": data}[changed]
    flip_byte(target, target.stat().st_size // 2)
    after = key_of(bundle, data)

    assert after.slot == before.slot
    assert after.key != before.key
    with pytest.warns(ResultCacheWarning, match="stale"):
        cache.get_or_compute(after, compute)
    assert compute.calls == 2
    # The recomputed result replaced the stale entry.
    cache.get_or_compute(after, compute)
    assert compute.calls == 2


@pytest.mark.parametrize(
    "parameters",
    [{"rows": [0, 1, 2, 4]}, {"baseline": "mean"}, {"output_space": "probability"}, {"seed": 1}, {"budget": 10}],
)
def test_changed_parameter_misses(tmp_path, inputs, parameters):
    bundle, data = inputs
    compute = CountingCompute(bundle, data)
    cache = ResultCache(tmp_path / "cache")
    cache.get_or_compute(key_of(bundle, data), compute)

    other = key_of(bundle, data, **parameters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a different slot is a plain miss, without a warning
        cache.get_or_compute(other, compute)

    assert other.slot != key_of(bundle, data).slot
    assert compute.calls == 2


def test_parameters_must_be_json(inputs):
    bundle, data = inputs
    with pytest.raises(ResultCacheError, match="plain JSON values"):
        key_of(bundle, data, rows=np.arange(3))


def test_missing_data_file_is_reported(tmp_path, inputs):
    bundle, _ = inputs
    with pytest.raises(ResultCacheError, match="cannot read the data file"):
        key_of(bundle, tmp_path / "absent.parquet")


def test_cache_folder_that_is_a_file(tmp_path):
    path = tmp_path / "cache"
    path.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ResultCacheError, match="is a file"):
        ResultCache(path)


# --- damaged entries --------------------------------------------------------------------------------


def truncate_arrays(json_path: Path, npz_path: Path) -> None:
    npz_path.write_bytes(npz_path.read_bytes()[: npz_path.stat().st_size // 2])


def flip_array_byte(json_path: Path, npz_path: Path) -> None:
    flip_byte(npz_path, npz_path.stat().st_size // 2)


def edit_stored_value(json_path: Path, npz_path: Path) -> None:
    entry = json.loads(json_path.read_text(encoding="utf-8"))
    entry["tree"]["fields"]["method"] = "integrated_gradients"
    json_path.write_text(json.dumps(entry), encoding="utf-8")


def edit_key(json_path: Path, npz_path: Path) -> None:
    entry = json.loads(json_path.read_text(encoding="utf-8"))
    entry["key"] = "0" * 64
    json_path.write_text(json.dumps(entry), encoding="utf-8")


def truncate_json(json_path: Path, npz_path: Path) -> None:
    json_path.write_bytes(json_path.read_bytes()[:100])


def delete_arrays(json_path: Path, npz_path: Path) -> None:
    npz_path.unlink()


def delete_json(json_path: Path, npz_path: Path) -> None:
    json_path.unlink()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (truncate_arrays, "checksum differs"),
        (flip_array_byte, "checksum differs"),
        (edit_stored_value, "checksum differs"),
        (edit_key, "stale"),
        (truncate_json, "not valid JSON"),
        (delete_arrays, "arrays file .* is missing"),
        (delete_json, "metadata file .* is missing"),
    ],
)
def test_damaged_entry_is_recomputed(tmp_path, inputs, damage, reason):
    bundle, data = inputs
    compute = CountingCompute(bundle, data)
    cache = ResultCache(tmp_path / "cache")
    key = key_of(bundle, data)
    original = cache.get_or_compute(key, compute)

    damage(*cache.entry_paths(key))
    with pytest.warns(ResultCacheWarning, match=reason):
        recomputed = cache.get_or_compute(key, compute)

    assert compute.calls == 2
    assert_same_result(original, recomputed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_result(original, cache.load(key))


class WritesMarker:
    """An object whose unpickling would create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_array_is_not_loaded(tmp_path, inputs):
    bundle, data = inputs
    cache = ResultCache(tmp_path / "cache")
    key = key_of(bundle, data)
    marker = tmp_path / "marker"
    cache.store(key, Attribution(np.zeros((1, 1)), np.zeros(1), np.zeros(1), ("f",), np.zeros(1, dtype=np.int64), "m", "zero"))
    json_path, npz_path = cache.entry_paths(key)
    # Replace the values array with a pickled object array and make the checksum match again.
    with np.load(npz_path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["a0"] = np.array([WritesMarker(marker)], dtype=object)
    np.savez(npz_path, **arrays)
    match_checksum(json_path, npz_path)

    with pytest.warns(ResultCacheWarning, match="allow_pickle"):
        assert cache.load(key) is None
    assert not marker.exists()


def match_checksum(json_path: Path, npz_path: Path) -> None:
    """Rewrite an entry's checksum so that it matches its files, as someone crafting an entry would."""
    from workbench.result_cache import _canonical_json, _payload_sha256

    entry = json.loads(json_path.read_text(encoding="utf-8"))
    entry["payload_sha256"] = _payload_sha256(_canonical_json(entry["tree"], "tree"), npz_path.read_bytes())
    json_path.write_text(json.dumps(entry), encoding="utf-8")


@pytest.mark.parametrize(
    ("arrays_bytes", "tree"),
    [
        (b"not a zip file", None),
        (None, {"$dataclass": "Popen", "fields": {}}),
        (None, {"$dict": [[["unhashable"], 1]]}),
        (None, {"$array": "missing-array"}),
    ],
    ids=["junk-arrays", "unknown-class", "list-key", "missing-array"],
)
def test_crafted_entry_with_valid_checksum(tmp_path, inputs, arrays_bytes, tree):
    bundle, data = inputs
    cache = ResultCache(tmp_path / "cache")
    key = key_of(bundle, data)
    cache.store(key, {"a": np.arange(3)})
    json_path, npz_path = cache.entry_paths(key)
    if arrays_bytes is not None:
        npz_path.write_bytes(arrays_bytes)
    if tree is not None:
        entry = json.loads(json_path.read_text(encoding="utf-8"))
        entry["tree"] = tree
        json_path.write_text(json.dumps(entry), encoding="utf-8")
    match_checksum(json_path, npz_path)

    with pytest.warns(ResultCacheWarning, match="computed again"):
        assert cache.load(key) is None


def test_unstorable_value_is_returned_with_warning(tmp_path, inputs):
    bundle, data = inputs
    cache = ResultCache(tmp_path / "cache")
    key = key_of(bundle, data)

    with pytest.warns(ResultCacheWarning, match="cannot store a value of type set"):
        value = cache.get_or_compute(key, lambda: {"a": {1, 2}})

    assert value == {"a": {1, 2}}
    assert cache.load(key) is None
    with pytest.raises(ResultCacheError, match="type set"):
        cache.store(key, {1, 2})


# --- a killed writer --------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from workbench.explain.result import Attribution
    from workbench.result_cache import CacheKey, ResultCache

    cache = ResultCache(sys.argv[1])
    key = CacheKey(slot="s" * 64, key="k" * 64, kind="test.killed")
    n = 300_000
    values = [
        Attribution(np.full((n, 4), fill), np.zeros(n), np.full(n, 4 * fill), ("a", "b", "c", "d"),
                    np.arange(n), "m", "zero")
        for fill in (1.0, 2.0)
    ]
    print("ready", flush=True)
    i = 0
    while True:
        cache.store(key, values[i % 2])
        i += 1
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.3, 0.9, 1.6])
def test_killed_writer_leaves_readable_cache(tmp_path, after_s):
    from workbench.result_cache import CacheKey

    folder = tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        time.sleep(after_s)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    cache = ResultCache(folder)
    key = CacheKey(slot="s" * 64, key="k" * 64, kind="test.killed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultCacheWarning)  # the JSON of one write with the arrays of the next
        loaded = cache.load(key)
    if loaded is not None:
        fill = loaded.values[0, 0]
        assert fill in (1.0, 2.0)
        assert np.all(loaded.values == fill)
        np.testing.assert_array_equal(loaded.predictions, np.full(300_000, 4 * fill))

    replacement = Attribution(np.full((2, 4), 3.0), np.zeros(2), np.full(2, 12.0), ("a", "b", "c", "d"), np.arange(2), "m", "zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultCacheWarning)
        result = cache.get_or_compute(key, lambda: replacement)
    assert np.all(result.values == (3.0 if loaded is None else loaded.values[0, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(key) is not None


# --- the CLI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("explain", ["--method", "exact_shapley", "--rows", "6"]),
        ("explain", ["--method", "permutation_shapley", "--rows", "3", "--budget", "64", "--random-state", "7"]),
        ("interactions", ["--index", "STII", "--rows", "3", "--baseline", "mean", "--background-rows", "5"]),
    ],
)
def test_cli_cache_gives_same_output(tmp_path, monkeypatch, inputs, command, options):
    bundle, data = inputs
    compute_name = "explain" if command == "explain" else "interactions"
    real = getattr(cli, compute_name)
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, compute_name, counting)
    outputs, notes = {}, {}
    for run in ("plain", "first", "second"):
        cache = [] if run == "plain" else ["--cache", str(tmp_path / "cache")]
        out = tmp_path / f"{run}.parquet"
        status, stdout, stderr = run_cli([command, str(bundle), str(data), "--out", str(out), *options, *cache])
        assert status == 0, stderr
        outputs[run] = (out.read_bytes(), json.loads(stdout))
        notes[run] = stderr

    assert len(calls) == 2  # the plain run and the first cached run; the second is a hit
    assert "cache:" not in notes["plain"]
    assert "cache: computed the result and stored it" in notes["first"]
    assert "cache: read the stored result" in notes["second"]
    for run in ("first", "second"):
        assert outputs[run][0] == outputs["plain"][0]
        summary = {k: v for k, v in outputs[run][1].items() if k != "out"}
        assert summary == {k: v for k, v in outputs["plain"][1].items() if k != "out"}


def test_cli_cache_skips_unseeded_sampling(tmp_path, inputs, caplog):
    bundle, data = inputs
    out = tmp_path / "out.parquet"
    status, _, stderr = run_cli(
        ["explain", str(bundle), str(data), "--out", str(out), "--method", "permutation_shapley", "--rows", "2",
         "--budget", "64", "--cache", str(tmp_path / "cache")]
    )
    assert status == 0, stderr
    assert "--random-state is not set" in caplog.text
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# --- the app ----------------------------------------------------------------------------------------


def test_app_reuses_cache_dir(tmp_path, monkeypatch, tiny_models_dir, tiny_data_dir):
    from streamlit.testing.v1 import AppTest

    from helpers import point_app_at
    from workbench.app import state

    setup = point_app_at(monkeypatch, tiny_models_dir, tiny_data_dir)
    next(setup)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    real_explain = state.explain
    calls = []

    def counting_explain(*args, **kwargs):
        calls.append(1)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(state, "explain", counting_explain)

    def completeness_metric() -> str:
        app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=120)
        app.session_state["importance_rows"] = 20
        app.run()
        app.switch_page("workbench/app/pages/importance.py")
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        return next(m.value for m in app.metric if m.label == "Completeness gap share")

    try:
        first = completeness_metric()
        import streamlit as st

        st.cache_data.clear()  # as after a restart of the app: only the disk cache is left
        second = completeness_metric()
    finally:
        next(setup, None)

    assert len(calls) == 1
    assert second == first
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_cli_corrupt_entry_warns_once(tmp_path, inputs, caplog):
    bundle, data = inputs
    cache = tmp_path / "cache"
    argv = ["explain", str(bundle), str(data), "--rows", "3", "--method", "exact_shapley", "--cache", str(cache)]
    status, _, stderr = run_cli([*argv, "--out", str(tmp_path / "a.parquet")])
    assert status == 0, stderr
    entry = next(cache.rglob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:-20])
    caplog.clear()
    status, _, stderr = run_cli([*argv, "--out", str(tmp_path / "b.parquet")])
    assert status == 0, stderr
    assert "ResultCacheWarning" not in stderr
    assert [record.message for record in caplog.records if "checksum differs" in record.message] != []
    assert len([record for record in caplog.records if record.name == "workbench.result_cache"]) == 1
    assert "cache: computed the result and stored it" in stderr

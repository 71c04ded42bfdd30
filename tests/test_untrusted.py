"""Pickles, whole torch modules and TorchScript load only with ``allow_code=True``, and their kind is recognised."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.untrusted import (
    PICKLE,
    SAFETENSORS,
    TORCH_ARCHIVE,
    TORCHSCRIPT,
    UNKNOWN,
    ZIP,
    UnsafeLoadError,
    UnsafeLoadWarning,
    detect_file_kind,
    load_pickle,
    load_torch_module,
    load_torchscript,
)

# torch 2.13 deprecates TorchScript, which these tests need to write and read archives.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.* is deprecated:DeprecationWarning")

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "models" / "ad_clicks_deepfm" / "weights.safetensors"


class WritesMarker:
    """An object whose unpickling creates the file ``marker`` and returns the number 42."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch_and_return, (str(self.marker),))


def _touch_and_return(marker: str) -> int:
    Path(marker).touch()
    return 42


class Doubler(torch.nn.Module):
    def __init__(self, payload: object = None) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([2.0]))
        self.payload = payload

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "marker"


@pytest.fixture
def pickle_file(tmp_path, marker):
    path = tmp_path / "feature_processor.pkl"
    path.write_bytes(pickle.dumps({"value": WritesMarker(marker)}))
    return path


@pytest.fixture
def module_file(tmp_path, marker):
    path = tmp_path / "model.pt"
    torch.save(Doubler(payload=WritesMarker(marker)), path)
    return path


@pytest.fixture
def script_file(tmp_path):
    path = tmp_path / "model.ts"
    torch.jit.script(Doubler()).save(str(path))
    return path


# --- pickles ----------------------------------------------------------------------------------------


def test_pickle_refused_without_opt_in(pickle_file, marker):
    with pytest.raises(UnsafeLoadError, match="allow_code=True") as caught:
        load_pickle(pickle_file)
    message = str(caught.value)
    assert str(pickle_file) in message
    assert "Python pickle" in message
    assert "can run code" in message
    assert not marker.exists()


def test_pickle_loads_with_opt_in(pickle_file, marker):
    with pytest.warns(UnsafeLoadWarning, match="feature_processor.pkl"):
        loaded = load_pickle(pickle_file, allow_code=True)
    assert loaded == {"value": 42}
    assert marker.exists()


def test_pickle_loader_rejects_other_kinds(script_file):
    with pytest.raises(UnsafeLoadError, match="is a TorchScript archive"):
        load_pickle(script_file, allow_code=True)
    with pytest.raises(UnsafeLoadError, match="is a safetensors file"):
        load_pickle(WEIGHTS, allow_code=True)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(UnsafeLoadError, match="was not found"):
        load_pickle(tmp_path / "absent.pkl", allow_code=True)
    with pytest.raises(UnsafeLoadError, match="is a folder"):
        load_torchscript(tmp_path, allow_code=True)


# --- whole torch modules ----------------------------------------------------------------------------


def test_torch_module_refused_without_opt_in(module_file, marker):
    with pytest.raises(UnsafeLoadError, match="allow_code=True") as caught:
        load_torch_module(module_file)
    assert str(module_file) in str(caught.value)
    assert "torch.save zip archive" in str(caught.value)
    assert not marker.exists()


def test_torch_module_loads_with_opt_in(module_file, marker):
    with pytest.warns(UnsafeLoadWarning, match="model.pt"):
        module = load_torch_module(module_file, allow_code=True)
    assert isinstance(module, Doubler)
    assert module.payload == 42
    assert marker.exists()
    assert module(torch.tensor([1.5, -3.0])).tolist() == [3.0, -6.0]


def test_torch_module_loader_rejects_state_dict(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(Doubler().state_dict(), path)
    with pytest.warns(UnsafeLoadWarning), pytest.raises(UnsafeLoadError, match="contains a OrderedDict, not a torch.nn.Module"):
        load_torch_module(path, allow_code=True)


# --- TorchScript ------------------------------------------------------------------------------------


def test_torchscript_refused_without_opt_in(script_file):
    with pytest.raises(UnsafeLoadError, match="allow_code=True") as caught:
        load_torchscript(script_file)
    assert str(script_file) in str(caught.value)
    assert "TorchScript archive" in str(caught.value)


def test_torchscript_loads_with_opt_in(script_file):
    with pytest.warns(UnsafeLoadWarning, match="model.ts"):
        module = load_torchscript(script_file, allow_code=True)
    assert module(torch.tensor([0.25, 4.0])).tolist() == [0.5, 8.0]


def test_torchscript_loader_rejects_pickle(pickle_file, marker):
    with pytest.raises(UnsafeLoadError, match="is a Python pickle"):
        load_torchscript(pickle_file, allow_code=True)
    assert not marker.exists()


# --- kinds ------------------------------------------------------------------------------------------


def test_kind_of_each_format(tmp_path, pickle_file, module_file, script_file, marker):
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    state = tmp_path / "state.pt"
    torch.save({"w": torch.ones(2)}, state)
    plain_zip = tmp_path / "files.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")

    assert detect_file_kind(pickle_file) == PICKLE
    assert detect_file_kind(legacy) == PICKLE
    assert detect_file_kind(module_file) == TORCH_ARCHIVE
    assert detect_file_kind(state) == TORCH_ARCHIVE
    assert detect_file_kind(script_file) == TORCHSCRIPT
    assert detect_file_kind(WEIGHTS) == SAFETENSORS
    assert detect_file_kind(plain_zip) == ZIP
    assert not marker.exists()  # detection ran nothing


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"user_id,label\n1,0\n2,1\n",
        b'{"not": "pickle"}',
        b"\x80\x05\x95",  # a pickle cut off after its first bytes
        np.random.default_rng(0).bytes(3 << 20),
        (10).to_bytes(8, "little") + b"not json!!" + b"\0" * 32,  # a safetensors-like length with no JSON header
    ],
    ids=["empty", "csv", "json", "cut-pickle", "random-3MB", "fake-safetensors"],
)
def test_kind_of_junk_is_unknown(tmp_path, payload):
    path = tmp_path / "junk.bin"
    path.write_bytes(payload)
    assert detect_file_kind(path) == UNKNOWN


def test_junk_refused_with_its_kind(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"user_id,label\n1,0\n")
    with pytest.raises(UnsafeLoadError, match="is not a pickle, torch archive"):
        load_pickle(path, allow_code=True)

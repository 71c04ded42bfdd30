"""A writer killed in the middle of a save leaves a whole bundle or report: the previous one or the new one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.bundle import load_bundle
from workbench.data import file_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[1]
KILL_AFTER_S = (0.3, 0.8, 1.5)

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import plotly.graph_objects as go

    from workbench.bundle import load_bundle, save_bundle
    from workbench.report import Report, ReportSection, write_html

    kind, target = sys.argv[1], Path(sys.argv[2])
    print("ready", flush=True)
    if kind == "bundle":
        model = load_bundle(sys.argv[3]).model
        while True:
            save_bundle(model, target, overwrite=True)
    else:
        figure = go.Figure(go.Bar(x=list(range(20_000)), y=list(range(20_000))))
        report = Report("big", [ReportSection(f"s{i}", figure, {}) for i in range(5)])
        while True:
            write_html(report, target, overwrite=True)
    """
)


def kill_writer(arguments: list[str], after_s: float) -> None:
    """Start a process that saves in a loop and kill it with SIGKILL ``after_s`` seconds after it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, *arguments], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        time.sleep(after_s)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("after_s", KILL_AFTER_S)
def test_killed_bundle_save_keeps_a_loadable_bundle(tmp_path, after_s):
    source = REPO_ROOT / "models" / "ad_clicks_deepfm"
    target = tmp_path / "bundle"
    shutil.copytree(source, target)
    kill_writer(["bundle", str(target), str(source)], after_s)
    bundle = load_bundle(target)
    assert bundle.architecture == "deepfm"
    assert file_fingerprint(target / "weights.safetensors") == bundle.manifest["weights"]["sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("after_s", KILL_AFTER_S)
def test_killed_report_write_keeps_a_whole_file(tmp_path, after_s):
    target = tmp_path / "report.html"
    target.write_text("<!DOCTYPE html><html><body>previous</body></html>\n", encoding="utf-8")
    kill_writer(["report", str(target)], after_s)
    text = target.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</html>")
    assert text.startswith("<!DOCTYPE html>")

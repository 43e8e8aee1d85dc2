"""`layerscope plot` marks a run's watch alerts on a heatmap by default; --no-alerts leaves them off."""

from __future__ import annotations

from pathlib import Path

from layerscope.store import Event, LayerInfo, StepRecord, Store


def _store(path: Path) -> Path:
    with Store(path) as st:
        st.create_run("a", [LayerInfo(i + 1, f"h.{i}") for i in range(3)])
        alert = Event(20, "alert", "max_abs jump", "layer 2", "output", "rms", 2, None, 9.0)
        st.write_steps(
            "a",
            [
                StepRecord(s, {("rms", "output"): [1.0, 2.0, 3.0]}, events=[alert] if s == 20 else [])
                for s in (10, 20, 30)
            ],
        )
    return path


def test_plot_marks_alerts_unless_told_not_to(cli, tmp_path: Path) -> None:
    db = _store(tmp_path / "runs.db")
    on = cli("plot", str(db), "--metric", "rms", "-o", str(tmp_path / "on.svg"))
    assert on.returncode == 0, on.stderr
    assert 'id="watch-alerts"' in (tmp_path / "on.svg").read_text()
    off = cli("plot", str(db), "--metric", "rms", "--no-alerts", "-o", str(tmp_path / "off.svg"))
    assert off.returncode == 0, off.stderr
    assert "watch-alerts" not in (tmp_path / "off.svg").read_text()
    html = cli("plot", str(db), "--metric", "rms", "-o", str(tmp_path / "on.html"), "--plotly", "directory")
    assert html.returncode == 0 and '"meta":"watch-alerts"' in (tmp_path / "on.html").read_text().replace(
        " ", ""
    )
    assert "--no-alerts" in cli("plot", "--help").stdout

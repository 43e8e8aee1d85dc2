"""Watch alerts drawn on heatmaps: markers on the right cells (read back from the matplotlib artists
and the plotly figure dict), none without alerts or with alerts=False, a per-head alert names its head,
and every string of an alert is escaped in HTML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import layerscope
from layerscope.render import heatmap_figure
from layerscope.render.alerts import alert_cells
from layerscope.render.html import heatmap_figure as html_figure
from layerscope.store import Event, LayerInfo, StepRecord, Store

STEPS = list(range(10, 210, 10))  # 20 steps
N_LAYERS = 6


def _store(path: Path, events: dict[int, list[Event]], heads: int = 0) -> Path:
    """Run ``a``: rms and kurtosis at the output (and, with ``heads``, max_logit per head at attn),
    with ``events[step]`` written with each step."""
    rng = np.random.default_rng(0)
    with Store(path) as st:
        st.create_run("a", [LayerInfo(i + 1, f"blocks.{i}") for i in range(N_LAYERS)])
        recs = []
        for s in STEPS:
            vals: dict[tuple[str, str], np.ndarray] = {
                ("rms", "output"): rng.random(N_LAYERS) + 1,
                ("kurtosis", "output"): rng.random(N_LAYERS) + 3,
            }
            if heads:
                vals[("max_logit", "attn")] = rng.random((N_LAYERS, heads)) + 2
            recs.append(StepRecord(s, vals, events=events.get(s, [])))
        st.write_steps("a", recs)
    return path


def _alert(
    step: int, metric: str, layer: int, site: str = "output", head: int | None = None, rule: str = "jump"
):
    return Event(
        step, "alert", rule, f"{metric} fired", site=site, metric=metric, layer=layer, head=head, value=42.5
    )


def _by_gid(fig, gid: str):
    return [c for ax in fig.axes for c in ax.collections if c.get_gid() == gid]


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for lg in fig.legends for t in lg.get_texts()]


@pytest.fixture
def alert_store(tmp_path: Path) -> Path:
    return _store(
        tmp_path / "runs.db",
        {
            60: [_alert(60, "rms", 4)],
            150: [_alert(150, "rms", 2), _alert(150, "kurtosis", 2)],  # one cell, two alerts
            120: [_alert(120, "kurtosis", 6)],  # another metric at this site
            130: [_alert(130, "max_abs", 1, site="mlp_act")],  # another site: not on this map
        },
    )


def test_static_markers_sit_on_the_alert_cells(alert_store: Path) -> None:
    hm = layerscope.load(alert_store, metric="rms")
    assert [e.step for e in hm.events] == [60, 120, 130, 150, 150]  # the map carries the run's alerts
    fig = heatmap_figure(hm)
    (mark,) = _by_gid(fig, "watch-alerts")
    # Cells are drawn at x = layer column (1-based), y = step (evenly spaced steps: step units).
    assert sorted(map(tuple, mark.get_offsets().tolist())) == [(2.0, 150.0), (4.0, 60.0)]
    (other,) = _by_gid(fig, "watch-alerts-other")
    assert other.get_offsets().tolist() == [[6.0, 120.0]]
    assert mark.get_facecolors().size == 0 or mark.get_facecolors()[:, 3].max() == 0  # hollow: colour shows
    texts = _legend_texts(fig)
    assert "watch alert (2)" in texts
    assert any(t.startswith("other alerts at output (2: kurtosis)") for t in texts)


def test_uneven_steps_and_a_step_between_rows(tmp_path: Path) -> None:
    # Rows are then equal (row-index units); an alert between two recorded steps takes the nearest row.
    hm = layerscope.load(_store(tmp_path / "r.db", {50: [_alert(50, "rms", 3)]}), metric="rms")
    hm.steps = [10, 20, 40, 80, *STEPS[4:]]  # uneven (same count); 50 lies between 40 and 80
    cells = alert_cells(hm)
    assert [(c.row, c.col) for c in cells] == [(2, 2)]
    (mark,) = _by_gid(heatmap_figure(hm), "watch-alerts")
    assert mark.get_offsets().tolist() == [[3.0, 2.0]]


def test_no_markers_without_alerts_or_when_turned_off(tmp_path: Path, alert_store: Path) -> None:
    plain = layerscope.load(_store(tmp_path / "plain.db", {}), metric="rms")
    assert plain.events == []
    fig = heatmap_figure(plain)
    assert not _by_gid(fig, "watch-alerts") and not _by_gid(fig, "watch-alerts-other")
    assert not any("alert" in t for t in _legend_texts(fig))
    off = heatmap_figure(layerscope.load(alert_store, metric="rms"), alerts=False)
    assert not _by_gid(off, "watch-alerts") and not any("alert" in t for t in _legend_texts(off))
    html = html_figure([plain])
    assert not [t for t in html["data"] if str(t.get("meta", "")).startswith("watch")]


def test_a_map_read_since_a_step_marks_only_later_alerts(alert_store: Path) -> None:
    with Store(alert_store, readonly=True) as st:
        hm = st.load("a", "rms", "output", since_step=100)
    assert [e.step for e in hm.events] == [120, 130, 150, 150]
    assert [(hm.steps[c.row], c.col + 1) for c in alert_cells(hm) if c.primary] == [(150, 2)]


def test_per_head_alert_marks_its_layer_and_names_the_head(tmp_path: Path) -> None:
    path = _store(tmp_path / "h.db", {90: [_alert(90, "max_logit", 5, site="attn", head=2)]}, heads=4)
    hm = layerscope.load(path, metric="max_logit", site="attn", reduce="max")
    fig = heatmap_figure(hm)
    (mark,) = _by_gid(fig, "watch-alerts")
    assert mark.get_offsets().tolist() == [[5.0, 90.0]]
    assert "watch alert (1; head 2)" in _legend_texts(fig)
    assert [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "watch-alert-head"] == ["h2"]
    # A map of one head marks that head's alerts only.
    assert [c.col for c in alert_cells(layerscope.load(path, metric="max_logit", site="attn", reduce=2))] == [
        4
    ]
    assert alert_cells(layerscope.load(path, metric="max_logit", site="attn", reduce=1)) == []
    (trace,) = [t for t in html_figure([hm])["data"] if t.get("meta") == "watch-alerts"]
    assert trace["text"] == [
        "step 90 \u00b7 layer 5 (blocks.4) head 2 \u00b7 max_logit@attn = 42.5 \u00b7 jump"
    ]


def test_svg_names_the_markers_and_small_multiples_count_every_panel(
    alert_store: Path, tmp_path: Path
) -> None:
    hm = layerscope.load(alert_store, metric="rms")
    svg = layerscope.plot(hm, tmp_path / "rms.svg").read_text()
    assert 'id="watch-alerts"' in svg and 'id="watch-alerts-other"' in svg
    ku = layerscope.load(alert_store, metric="kurtosis")
    fig = layerscope.plot([hm, ku])
    assert len(_by_gid(fig, "watch-alerts")) == 2
    texts = _legend_texts(fig)
    assert "watch alert (4)" in texts  # rms: 60 and 150; kurtosis: 120 and 150


def test_html_markers_on_the_cells_with_the_alerts_in_the_hover(alert_store: Path) -> None:
    hm = layerscope.load(alert_store, metric="rms")
    fig = html_figure([hm])
    (mark,) = [t for t in fig["data"] if t.get("meta") == "watch-alerts"]
    heat = fig["data"][0]
    assert mark["y"] == [60, 150] and mark["x"] == [heat["x"][3], heat["x"][1]]
    assert mark["name"] == "watch alert (2)" and mark["showlegend"] is True
    # The axis ends at the rows' edges: no band of padding for a marker on the first or last row.
    assert fig["layout"]["yaxis"]["range"] == [205.0, 5.0] and fig["layout"]["yaxis"]["autorange"] is False
    assert mark["text"][1] == (
        "step 150 \u00b7 layer 2 (blocks.1) \u00b7 rms@output = 42.5 \u00b7 jump<br>"
        "step 150 \u00b7 layer 2 (blocks.1) \u00b7 kurtosis@output = 42.5 \u00b7 jump"
    )
    (other,) = [t for t in fig["data"] if t.get("meta") == "watch-alerts-other"]
    assert other["y"] == [120] and other["x"] == [heat["x"][5]]
    off = html_figure([hm], alerts=False)
    assert not [t for t in off["data"] if str(t.get("meta", "")).startswith("watch")]


def test_html_escapes_a_forged_rule_and_layer_name(tmp_path: Path) -> None:
    forged = '<img src=x onerror="alert(1)">%{z}'
    path = tmp_path / "f.db"
    with Store(path) as st:
        st.create_run("a", [LayerInfo(1, "<b>x</b>"), LayerInfo(2, "h.1")])
        st.write_steps(
            "a",
            [
                StepRecord(
                    s,
                    {("rms", "output"): [1.0, 2.0]},
                    events=[_alert(s, "rms", 1, rule=forged)] if s == 20 else [],
                )
                for s in (10, 20, 30)
            ],
        )
    hm = layerscope.load(path, metric="rms")
    (mark,) = [t for t in html_figure([hm])["data"] if t.get("meta") == "watch-alerts"]
    (text,) = mark["text"]
    assert "<img" not in text and "<b>" not in text and "%{" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&#37;{z}" in text and "&lt;b&gt;x&lt;/b&gt;" in text
    page = layerscope.plot(hm, tmp_path / "f.html").read_text()
    assert '<img src=x onerror="alert(1)">' not in page

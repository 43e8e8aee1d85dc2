"""The dashboard's alerts endpoint (/api/events) and its per-head maps, through Flask's test client:
the run's watch alerts newest first with their cell, head, value and rule, strict JSON for a NaN
value, later ones only with since_step, a missing run one JSON error; an attn map reads reduced
over its heads (the largest max logit)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from layerscope.serve import create_app
from layerscope.store import Event, LayerInfo, StepRecord, Store

XSS = "<img src=x onerror=alert(1)>"


def _strict(body: bytes) -> object:
    def no_constants(tok: str) -> None:
        raise AssertionError(f"non-standard JSON constant {tok} in the response")

    return json.loads(body, parse_constant=no_constants)


@pytest.fixture
def client(tmp_path: Path):
    path = tmp_path / "runs.db"
    rng = np.random.default_rng(0)
    with Store(path) as st:
        st.create_run("a", [LayerInfo(i + 1, f"blocks.{i}") for i in range(3)])
        recs = []
        for s in (10, 20, 30, 40):
            ev = []
            if s == 20:
                ev = [
                    Event(20, "alert", "max_abs jump", "layer 2 max_abs", "output", "max_abs", 2, None, 9.5)
                ]
            if s == 30:
                ev = [
                    Event(30, "alert", XSS, "head 1 of layer 3", "attn", "max_logit", 3, 1, 61.0),
                    Event(30, "alert", "nonfinite", "layer 1 rms nan", "output", "rms", 1, None, math.nan),
                ]
            recs.append(
                StepRecord(
                    s,
                    {
                        ("max_abs", "output"): rng.random(3),
                        ("rms", "output"): rng.random(3),
                        ("max_logit", "attn"): np.arange(6.0).reshape(3, 2) + s,  # (layers, heads)
                    },
                    events=ev,
                )
            )
        st.write_steps("a", recs)
    return create_app(path).test_client()


def test_events_newest_first_with_cell_head_value_and_rule(client) -> None:
    r = client.get("/api/events?run=a")
    assert r.status_code == 200
    d = _strict(r.data)
    assert d["n"] == 3 and d["run"] == "a"
    assert [(a["step"], a["site"], a["metric"], a["layer"], a["head"]) for a in d["alerts"]] == [
        (30, "output", "rms", 1, None),
        (30, "attn", "max_logit", 3, 1),
        (20, "output", "max_abs", 2, None),
    ]
    nan_alert, head_alert, _ = d["alerts"]
    assert nan_alert["value"] is None and nan_alert["value_text"] == "nan"  # strict JSON, still said
    assert head_alert["value"] == 61.0 and head_alert["layer_name"] == "blocks.2"
    assert head_alert["rule"] == XSS  # data, not markup: the page sets it as text
    assert r.headers["Cache-Control"] == "no-store"


def test_events_since_a_step_and_errors(client) -> None:
    d = client.get("/api/events?run=a&since_step=20").get_json()
    assert sorted(a["step"] for a in d["alerts"]) == [30, 30]
    miss = client.get("/api/events?run=nope")
    assert miss.status_code == 404 and "nope" in miss.get_json()["error"]
    bad = client.get("/api/events?run=a&since_step=x")
    assert bad.status_code == 400 and "since_step" in bad.get_json()["error"]
    assert client.get("/api/events").status_code == 400  # no run


def test_a_per_head_map_reads_reduced_over_heads(client) -> None:
    d = client.get("/api/heatmap?run=a&metric=max_logit&site=attn").get_json()
    # Heads (2 per layer) of layer j at step s are 2j + s and 2j + 1 + s: the max is the second.
    assert d["values"] == [[2 * j + 1.0 + s for j in range(3)] for s in (10, 20, 30, 40)]
    assert client.get("/api/heatmap?run=a&metric=max_logit&site=attn&max_rows=2").status_code == 200

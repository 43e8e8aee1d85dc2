"""The report of a stored run's attention heads, output logits and watch alerts (issue 19, item 4):
planted patterns are named with their numbers, every number of the Markdown is in the JSON, and the
CLI tests are in tests/integration/test_cli_report_heads.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from tests.stores import ATTN_HEADS, ATTN_LAYERS, ATTN_STEPS, attn_store, planted_attn
from tests.unit.test_analysis import quoted_numbers_not_in_json

from layerscope.analysis import Extras, report
from layerscope.analysis.heads import ends_count
from layerscope.analysis.run import report_run
from layerscope.errors import ConfigError
from layerscope.store import HeadSeries, Store
from layerscope.store.heatmap import Heatmap


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    return attn_store(tmp_path / "runs.db")


def ends(series: np.ndarray) -> tuple[float, float]:
    """First and last value as the report defines them (medians of k values), independently."""
    v = series[np.isfinite(series)]
    k = max(1, min(3, len(v) // 10))
    return float(np.median(v[:k])), float(np.median(v[-k:]))


def test_attn_max_logit_names_the_head_that_grows(planted: Path) -> None:
    rep = report_run(planted, metric="max_logit", site="attn")
    d = rep.to_dict()
    assert d["aggregate"] == {"over": "heads", "reduce": "max", "n_heads": ATTN_HEADS}
    # the map is the max over the heads, as Store.load(reduce="max") reads it
    with Store(planted, readonly=True) as st:
        np.testing.assert_allclose(
            rep.heatmap.values, st.load("planted", "max_logit", "attn", reduce="max").values
        )
    ml = d["heads"]["max_logit"]
    assert ml["n_heads"] == ATTN_LAYERS * ATTN_HEADS and ml["n_growing"] == 1 and ml["growing_layers"] == [2]
    top = ml["top"][0]
    assert (top["layer"], top["head"], top["layer_name"]) == (2, 1, "h.1")
    first, last = ends(planted_attn()[("max_logit", "attn")][:, 1, 1])
    assert top["first"] == pytest.approx(first, rel=1e-2) and top["last"] == pytest.approx(last, rel=1e-2)
    assert top["factor"] == pytest.approx(last / first, rel=1e-2) and top["factor"] > 5
    assert ml["top"][1]["factor"] < 2  # the others grow by 30%
    assert (ml["max"], ml["max_layer"], ml["max_head"], ml["max_step"]) == (10.0, 2, 1, ATTN_STEPS[-1])
    md = rep.to_markdown()
    assert "## Attention heads" in md and "layer 2 head 1 (`h.1`)" in md
    assert "each cell is the max over the 4 heads of its layer" in md
    assert "- **What `max_logit` at site `attn` is:** the largest pre-softmax attention logit" in md
    assert quoted_numbers_not_in_json(md, d) == []


def test_attn_entropy_collapse_and_sink(planted: Path) -> None:
    d = report_run(planted, metric="entropy", site="attn").to_dict()
    assert d["aggregate"]["reduce"] == "mean"
    e = d["heads"]["entropy"]
    assert e["n_collapsed"] == 1 and [(h["layer"], h["head"]) for h in e["collapsed"]] == [(3, 2)]
    assert e["collapsed"][0]["factor"] > 10 and e["collapsed"][0]["last"] < 0.3
    assert e["n_low"] == 1 and e["low"][0]["layer"] == 3
    s = d["heads"]["sink"]
    assert s["n_high"] == 1 and (s["top"][0]["layer"], s["top"][0]["head"], s["top"][0]["last"]) == (
        1,
        0,
        0.8,
    )
    texts = " ".join(i["text"] for i in d["interpretation"])
    assert "attention sink" in texts and "collapse" in texts


def test_alerts_of_the_map_are_listed_and_the_others_counted(planted: Path) -> None:
    rep = report_run(planted, metric="max_logit", site="attn")
    a = rep.to_dict()["alerts"]
    assert (a["n_total"], a["n_map"], a["n_other"], a["first_step"]) == (3, 1, 2, 200)  # the note is no alert
    item = a["items"][0]
    assert (item["step"], item["layer"], item["head"], item["value"]) == (200, 2, 1, 5.74)
    assert [(o["site"], o["metric"], o["n"]) for o in a["others"]] == [
        ("logits", "max_logit", 1),
        ("output", "rms", 1),
    ]
    md = rep.to_markdown()
    assert "## Watch alerts" in md and "- step 200, layer 2 (`h.1`), head 1: rule" in md
    # a map without alerts of its own still counts the run's others; a non-finite value prints as such
    d = report_run(planted, metric="rms", site="output").to_dict()
    assert (d["alerts"]["n_map"], d["alerts"]["items"][0]["value"]) == (1, None)
    assert "a non-finite value or none" in report_run(planted, metric="rms").to_markdown()


def test_logits_is_one_series_with_its_trends(planted: Path) -> None:
    rep = report_run(planted, metric="log_z", site="logits")
    d = rep.to_dict()
    assert d["n_layers"] == 1 and d["layers"] == [ATTN_LAYERS]  # the LM head's column only
    lg = d["logits"]
    got = {s["metric"]: s for s in lg["series"]}
    assert list(got) == ["max_logit", "log_z", "entropy"]
    assert (got["max_logit"]["trend"], got["log_z"]["trend"], got["entropy"]["trend"]) == (
        "rising",
        "rising",
        "falling",
    )
    vals = planted_attn()
    for m in got:
        first, last = ends(vals[(m, "logits")][:, -1])
        assert got[m]["first"] == pytest.approx(first, rel=1e-2) and got[m]["last"] == pytest.approx(
            last, rel=1e-2
        )
    assert got["log_z"]["factor"] == pytest.approx(got["log_z"]["last"] / got["log_z"]["first"], rel=1e-2)
    assert d["alerts"]["n_map"] == 1 and d["alerts"]["items"][0]["metric"] == "max_logit"  # the whole site
    md = rep.to_markdown()
    assert "**No layer axis:**" in md and "Output logits, each metric" in md and "z-loss" in md
    assert "**Layer" not in md  # no band of layers in a one-series report
    assert quoted_numbers_not_in_json(md, d) == []


def test_a_head_index_reports_that_head(planted: Path) -> None:
    rep = report_run(planted, metric="max_logit", site="attn", heads=1)
    assert rep.to_dict()["aggregate"]["reduce"] == 1
    np.testing.assert_allclose(rep.heatmap.values[:, 1], planted_attn()[("max_logit", "attn")][:, 1, 1])
    assert "each cell is head 1 of its layer" in rep.to_markdown()
    with pytest.raises(ConfigError, match="one value per layer"):
        report_run(planted, metric="rms", heads="max")


def test_every_number_of_every_section_is_in_the_json(planted: Path) -> None:
    for metric, site in [
        ("max_logit", "attn"),
        ("entropy", "attn"),
        ("sink", "attn"),
        ("max_logit", "logits"),
        ("entropy", "logits"),
        ("rms", "output"),
    ]:
        rep = report_run(planted, metric=metric, site=site)
        assert quoted_numbers_not_in_json(rep.to_markdown(), rep.to_dict()) == [], (metric, site)


def test_every_reading_of_the_sections_is_hedged(planted: Path) -> None:
    hedge = re.compile(
        r"\b(may|might|need not|consistent with|suggest|could|less certain|not evidence|does not)\b"
    )
    for metric, site in [
        ("max_logit", "attn"),
        ("entropy", "attn"),
        ("sink", "attn"),
        ("max_logit", "logits"),
        ("log_z", "logits"),
        ("entropy", "logits"),
        ("rms", "output"),
    ]:
        items = report_run(planted, metric=metric, site=site).to_dict()["interpretation"]
        assert len(items) >= 2
        for item in items:
            assert hedge.search(item["text"]), item["text"]


def test_a_report_without_a_store_has_no_store_sections() -> None:
    d = report(Heatmap(np.eye(3), steps=[1, 2, 3], layers=[1, 2, 3])).to_dict()
    assert not {"aggregate", "heads", "logits", "alerts", "meaning"} & set(d)
    # what the metric means comes with the site, store or not
    d = report(Heatmap(np.eye(3), steps=[1, 2, 3], layers=[1, 2, 3], metric="sink", site="attn")).to_dict()
    assert "attention sink" in d["meaning"] and "heads" not in d


def test_heads_that_never_have_a_value_and_non_positive_values() -> None:
    v = np.full((12, 2, 2), np.nan)
    v[:, 0, 0] = np.linspace(-1.0, 1.0, 12)  # crosses zero: no growth factor
    v[:, 1, 0] = np.linspace(1.0, 4.0, 12)
    hs = HeadSeries(v, list(range(1, 13)), [1, 2], ["a", "b"], "max_logit", "attn", "r")
    hm = Heatmap(np.nanmax(v, axis=2), steps=hs.steps, layers=[1, 2], metric="max_logit", site="attn")
    rep = report(hm, extras=Extras(heads={"max_logit": hs}, n_heads=2, reduce="max", events=[]))
    ml = rep.to_dict()["heads"]["max_logit"]
    assert ml["n_heads"] == 2 and ml["n_undefined"] == 1 and ml["top"][0]["layer"] == 2
    assert rep.to_dict()["alerts"]["n_total"] == 0 and "## Watch alerts" not in rep.to_markdown()
    assert quoted_numbers_not_in_json(rep.to_markdown(), rep.to_dict()) == []
    assert ends_count(len(hs.steps)) == 1

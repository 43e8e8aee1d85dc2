"""The JSON Schema of the report ships with the package, matches the typed facts, and rejects reports
that break the contract. (Every report the tests make is validated against it by the autouse
fixture in tests/conftest.py; the tests here make sure that check can fail.)"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import json
from typing import Any

import numpy as np
import pytest
from jsonschema import ValidationError

from layerscope.analysis import Report, Thresholds, report
from layerscope.analysis.observations import KINDS
from layerscope.analysis.report import SCHEMA_PATH, SCHEMA_VERSION
from layerscope.store.heatmap import Heatmap


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def sample() -> dict[str, Any]:
    """A report with many kinds at once: gradients, hotspot, levels, an outlier, inf, gaps."""
    t = np.linspace(0, 1, 10)[:, None]
    d = np.linspace(0, 1, 12)[None, :]
    v = 0.1 + t * d
    v[4, 3] = 50.0
    v[2, 2] = np.inf
    v[:, 7] = np.nan
    return report(Heatmap(v, steps=list(range(10, 110, 10)), layers=list(range(1, 13)))).to_dict()


def test_schema_ships_as_package_data() -> None:
    shipped = importlib.resources.files("layerscope.analysis") / "report.schema.json"
    assert shipped.is_file() and json.loads(shipped.read_text(encoding="utf-8")) == schema()
    assert schema()["properties"]["schema"]["const"] == SCHEMA_VERSION


def test_every_kind_has_its_facts_in_the_schema() -> None:
    s = schema()
    obs = s["$defs"]["observation"]
    assert obs["properties"]["kind"]["enum"] == list(KINDS)
    refs = {
        rule["if"]["properties"]["kind"]["const"]: rule["then"]["properties"]["facts"]["$ref"]
        for rule in obs["allOf"]
    }
    assert set(refs) == set(KINDS)
    for kind, cls in KINDS.items():
        facts = s["$defs"][refs[kind].rsplit("/", 1)[1]]
        fields = dataclasses.fields(cls)
        assert list(facts["properties"]) == [f.name for f in fields], kind
        assert facts["required"] == [f.name for f in fields if not f.metadata.get("optional")], kind
        assert facts["additionalProperties"] is False


def test_thresholds_in_the_schema_are_the_dataclass_fields() -> None:
    props = schema()["$defs"]["thresholds"]["properties"]
    assert list(props) == [f.name for f in dataclasses.fields(Thresholds)]


def test_a_report_validates_and_broken_ones_do_not(check_report) -> None:
    good = sample()
    kinds = {o["kind"] for o in good["observations"]}
    assert {"depth_gradient", "outlier", "infinite_values", "missing_values"} <= kinds
    check_report(good)

    def broken(edit) -> dict[str, Any]:
        d = copy.deepcopy(good)
        edit(d)
        return d

    bad = [
        broken(lambda d: d.pop("observations")),
        broken(lambda d: d.update(extra=1)),
        broken(lambda d: d.update(schema=2)),
        broken(lambda d: d["observations"][0].update(kind="wormhole")),
        broken(lambda d: d["observations"][0]["facts"].update(surprise=1)),
        broken(lambda d: d["observations"][0]["facts"].pop("from_layer")),
        broken(lambda d: d["layers_detail"][0].update(trend="sideways")),
        broken(lambda d: d.update(value_min="0.1")),
        broken(lambda d: d["observations"][-1].update(cells=[[1]])),
        broken(lambda d: d["thresholds"].pop("hotspot")),
    ]
    for d in bad:
        with pytest.raises(ValidationError):
            check_report(d)


def test_the_autouse_check_sees_reports_made_in_tests() -> None:
    with pytest.raises(ValidationError):
        Report({"schema": SCHEMA_VERSION})  # what a regression in report() would hand back

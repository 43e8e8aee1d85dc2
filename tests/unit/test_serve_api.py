"""The dashboard's JSON API and server, through Flask's test client: what the page reads is what the
store holds, errors are JSON that name what exists, names are data (never markup), and the server
cannot write."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import sqlite3
import struct
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

import layerscope
from layerscope.errors import ConfigError, StoreError
from layerscope.serve import create_app, reader
from layerscope.serve.server import Dashboard, bind, url_for
from layerscope.store import LayerInfo, StepRecord, Store

XSS = "<img src=x onerror=alert(1)>"


def _layers(n: int, fmt: str = "blocks.{}") -> list[LayerInfo]:
    return [LayerInfo(i + 1, fmt.format(i), "blocks", i + 1) for i in range(n)]


def _strict(body: bytes) -> object:
    """Parse as strict JSON: NaN / Infinity tokens are an error."""

    def no_constants(tok: str) -> None:
        raise AssertionError(f"non-standard JSON constant {tok} in the response")

    return json.loads(body, parse_constant=no_constants)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Run a: steps 10..30, rms/std at output and rms at mlp_act, one NaN and two infinite cells.
    Run b: steps 20..40, rms at output. Run XSS: a hostile name and hostile layer names."""
    store_path = tmp_path_factory.mktemp("serve") / "template.db"
    with Store(store_path) as st:
        st.create_run("a", _layers(3), model="M", config={"lr": 0.001})
        st.create_run("b", _layers(3))
        st.create_run(XSS, _layers(2, "<b>h.{}</b>"))
        for k, s in enumerate((10, 20, 30)):
            rms = [1.0 + k, 2.0 + k, 3.0 + k]
            if s == 20:
                rms[1] = float("nan")
            if s == 30:
                rms[2] = float("inf")
            st.write_step(
                "a",
                StepRecord(
                    s,
                    {
                        ("rms", "output"): rms,
                        ("std", "output"): [0.5 * (k + 1)] * 3,
                        ("rms", "mlp_act"): [float("-inf") if s == 10 else 7.0, 8.0, 9.0],
                    },
                ),
            )
        for k, s in enumerate((20, 30, 40)):
            st.write_step("b", StepRecord(s, {("rms", "output"): [0.5, 0.25 * k, 1.0]}))
        st.write_step(XSS, StepRecord(1, {("rms", "output"): [1.0, 2.0]}))
    return store_path


@pytest.fixture
def store(template: Path, store_path: Path) -> Path:
    """A fresh copy of the template store per test (the writer closed it: the file is complete)."""
    shutil.copyfile(template, store_path)
    return store_path


@pytest.fixture
def client(store: Path):
    return create_app(store).test_client()


def _get(client, url: str, status: int = 200) -> dict:
    r = client.get(url)
    assert r.status_code == status, r.data[:500]
    assert r.mimetype == "application/json"
    return _strict(r.data)  # type: ignore[return-value]


# -- what the page reads is what the store holds ---------------------------------------------------


def test_runs_list_steps_ranges_and_layers(client, store: Path) -> None:
    d = _get(client, "/api/runs")
    assert d["status"] == "ok" and d["store"] == str(store)
    assert [r["run"] for r in d["runs"]] == ["a", "b", XSS]  # creation order
    a, b, x = d["runs"]
    assert (a["steps"], a["first_step"], a["last_step"], a["layers"], a["model"]) == (3, 10, 30, 3, "M")
    assert (b["steps"], b["first_step"], b["last_step"]) == (3, 20, 40)
    assert (x["steps"], x["layers"]) == (1, 2)
    assert len({r["id"] for r in d["runs"]}) == 3


def test_run_lists_the_same_pairs_as_the_store(client, store: Path) -> None:
    d = _get(client, "/api/run?run=a")
    with Store(store, readonly=True) as st:
        assert [tuple(p) for p in d["pairs"]] == st.metrics("a")
    assert d["metrics"] == ["rms", "std"] and d["sites"] == ["mlp_act", "output"]
    assert [li["name"] for li in d["layer_info"]] == ["blocks.0", "blocks.1", "blocks.2"]
    assert d["config"]["lr"] == 0.001


def test_heatmap_is_the_stored_matrix_with_nan_as_null_and_inf_listed(client, store: Path) -> None:
    hm = layerscope.load(store, run="a", metric="rms", site="output")
    d = _get(client, "/api/heatmap?run=a&metric=rms&site=output")
    assert d["steps"] == hm.steps and d["layers"] == hm.layers and d["layer_names"] == hm.layer_names
    for i in range(len(hm.steps)):
        for j in range(len(hm.layers)):
            v = hm.values[i, j]
            assert d["values"][i][j] == (v if math.isfinite(v) else None)
    assert d["values"][1][1] is None  # the NaN cell
    assert d["inf"] == [[2, 2, 1]]  # +inf at step 30, layer 3: absent and infinite stay distinct
    low = _get(client, "/api/heatmap?run=a&metric=rms&site=mlp_act")
    assert low["inf"] == [[0, 0, -1]] and low["values"][0][0] is None


def test_since_step_returns_only_the_later_steps(client) -> None:
    full = _get(client, "/api/heatmap?run=a&metric=std&site=output")
    later = _get(client, "/api/heatmap?run=a&metric=std&site=output&since_step=10")
    assert later["steps"] == [20, 30] and later["values"] == full["values"][1:]
    assert later["layer_names"] == full["layer_names"] and later["last_step"] == 30
    none = _get(client, "/api/heatmap?run=a&metric=std&site=output&since_step=30")
    assert none["steps"] == [] and none["values"] == [] and none["last_step"] == 30
    assert _get(client, "/api/heatmap?run=a&metric=std&site=output&since_step=-5")["values"] == full["values"]
    inf = _get(client, "/api/heatmap?run=a&metric=rms&site=output&since_step=20")
    assert inf["steps"] == [30] and inf["inf"] == [[0, 2, 1]]  # row index relative to the answer


def test_since_step_sees_a_step_written_after_the_first_read(client, store: Path) -> None:
    assert _get(client, "/api/heatmap?run=b&metric=rms&since_step=40")["steps"] == []
    with Store(store) as st:
        st.write_step("b", StepRecord(50, {("rms", "output"): [9.0, 8.0, 7.0]}))
    d = _get(client, "/api/heatmap?run=b&metric=rms&since_step=40")
    assert d["steps"] == [50] and d["values"] == [[9.0, 8.0, 7.0]]
    assert _get(client, "/api/runs")["runs"][1]["last_step"] == 50


def test_report_is_the_analysis_of_the_same_matrix(client, store: Path) -> None:
    d = _get(client, "/api/report?run=a&metric=std&site=output")
    # The stored run's report, as `layerscope report STORE` writes it (with its watch alerts).
    expected = layerscope.report_run(store, run="a", metric="std", site="output")
    assert d["markdown"] == expected.to_markdown()
    assert d["report"] == expected.to_dict()
    assert (d["last_step"], d["n_steps"]) == (30, 3)


def test_compare_is_b_minus_a_as_layerscope_compare_draws_it(client, store: Path) -> None:
    from layerscope.render.diff import difference, summarize

    d = _get(client, "/api/compare?run_a=a&run_b=b&metric=rms&site=output")
    a = layerscope.load(store, run="a", metric="rms")
    b = layerscope.load(store, run="b", metric="rms")
    assert d["steps"] == [20, 30] and d["layers"] == [1, 2, 3] and d["mode"] == "absolute"
    assert (d["steps_only_a"], d["steps_only_b"]) == ([10], [40])
    assert d["diff"][0][0] == b.values[0, 0] - a.values[1, 0]  # step 20, layer 1: B - A
    assert d["diff"][0][1] is None  # NaN in A stays absent in the difference
    assert d["diff"] == reader.finite_or_none(difference(a, b).values)
    assert d["a"] == reader.finite_or_none(a.values[1:]) and d["b"] == reader.finite_or_none(b.values[:2])
    assert d["summary"] == summarize(a, b).sentences and d["summary"][0].startswith("Compared rms")
    rel = _get(client, "/api/compare?run_a=a&run_b=b&metric=rms&site=output&mode=relative")
    assert rel["mode"] == "relative" and rel["diff"] == reader.finite_or_none(
        difference(a, b, relative=True).values
    )
    assert "mode=absolute" in _get(client, "/api/compare?run_a=a&run_b=b&mode=ratio", 400)["error"]


def test_compare_with_a_run_that_shares_no_step_yet_is_an_answer(client) -> None:
    x = _get(client, "/api/compare?" + urlencode({"run_a": "a", "run_b": XSS, "metric": "rms"}))
    assert x["steps"] == [] and x["diff"] == [] and x["summary"] == []
    assert len(x["notes"]) == 1 and "share no recorded step" in x["notes"][0]
    assert x["steps_only_a"] == [10, 20, 30] and x["steps_only_b"] == [1]


# -- errors are JSON and name what exists --------------------------------------------------------


@pytest.mark.parametrize(
    "url, status, must_name",
    [
        ("/api/heatmap?run=zzz&metric=rms", 404, "'a'"),
        ("/api/heatmap?run=a&metric=nope", 404, "rms, std"),
        ("/api/heatmap?run=a&metric=rms&site=nope", 404, "mlp_act, output"),
        ("/api/heatmap?run=a&metric=nope&since_step=10", 404, "rms, std"),
        ("/api/heatmap?run=a&metric=std&site=mlp_act&since_step=0", 404, "output"),
        ("/api/run?run=zzz", 404, "'b'"),
        ("/api/report?run=zzz", 404, "'a'"),
        ("/api/compare?run_a=a&run_b=zzz", 404, "zzz"),
        ("/api/heatmap?metric=rms", 400, "'run'"),
        ("/api/heatmap?run=a&since_step=ten", 400, "'ten'"),
        ("/api/nothing", 404, "/api/runs"),
    ],
)
def test_errors_are_json_naming_what_exists(client, url: str, status: int, must_name: str) -> None:
    d = _get(client, url, status)
    assert d["status"] == status and must_name in d["error"], d["error"]
    assert "\n" not in d["error"]


def test_missing_then_empty_then_filled_store_without_restart(store_path: Path) -> None:
    client = create_app(store_path).test_client()
    d = _get(client, "/api/runs")
    assert d["status"] == "missing" and d["runs"] == []
    assert client.get("/").status_code == 200  # the page itself explains and waits
    assert "does not exist yet" in _get(client, "/api/heatmap?run=a", 404)["error"]
    store_path.touch()  # a writer has created the file but committed nothing yet
    assert _get(client, "/api/runs")["status"] == "empty"
    with Store(store_path) as st:
        st.create_run("first", _layers(2))
        st.write_step("first", StepRecord(1, {("rms", "output"): [1.0, 2.0]}))
    d = _get(client, "/api/runs")
    assert d["status"] == "ok" and [r["run"] for r in d["runs"]] == ["first"]


def test_a_run_without_steps_is_listed_and_says_so(store_path: Path) -> None:
    with Store(store_path) as st:
        st.create_run("fresh", _layers(2))
    client = create_app(store_path).test_client()
    (r,) = _get(client, "/api/runs")["runs"]
    assert (r["steps"], r["first_step"], r["last_step"], r["layers"]) == (0, None, None, 2)
    assert _get(client, "/api/run?run=fresh")["pairs"] == []
    assert "no recorded steps yet" in _get(client, "/api/heatmap?run=fresh&since_step=0", 404)["error"]


# -- names are data, never markup ------------------------------------------------------------------


def test_hostile_names_come_back_verbatim_as_json_strings(client) -> None:
    assert XSS in [r["run"] for r in _get(client, "/api/runs")["runs"]]
    d = _get(client, "/api/heatmap?" + urlencode({"run": XSS, "metric": "rms"}))
    assert d["run"] == XSS and d["layer_names"] == ["<b>h.0</b>", "<b>h.1</b>"]


def test_page_has_no_inline_script_and_escapes_the_store_path(tmp_path: Path) -> None:
    path = tmp_path / "<script>alert(1)</script>.db"
    r = create_app(path).test_client().get("/")
    html = r.data.decode()
    assert r.status_code == 200 and "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts and all(body.strip() == "" for body in scripts)  # every script is a src= file
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no inline event handlers
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/"), url  # same origin only: nothing from a CDN


def test_security_headers_forbid_inline_and_remote_scripts(client) -> None:
    for url in ("/", "/api/runs", "/static/app.js"):
        h = client.get(url).headers
        csp = dict(part.strip().split(" ", 1) for part in h["Content-Security-Policy"].split(";"))
        assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'"
        assert "http" not in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"
    assert client.get("/api/runs").headers["Cache-Control"] == "no-store"


def test_plotly_is_served_from_the_installed_package_and_cached(client) -> None:
    import plotly

    html = client.get("/").data.decode()
    src = re.search(r'src="(/vendor/plotly\.min\.js\?v=[^"]+)"', html).group(1)
    r = client.get(src)
    assert r.status_code == 200 and r.mimetype == "text/javascript"
    assert b"plotly.js" in r.data[:200] and len(r.data) > 1_000_000
    assert "immutable" in r.headers["Cache-Control"] and "max-age=31536000" in r.headers["Cache-Control"]
    assert f"v={plotly.__version__}" in src
    js = client.get("/static/app.js").data.decode()
    assert ".innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js


def test_host_header_must_be_local_by_default(store: Path) -> None:
    client = create_app(store).test_client()
    for host in ("127.0.0.1:8050", "localhost:8050", "[::1]:8050", "localhost"):
        assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host
    r = client.get("/api/runs", headers={"Host": "attacker.example:8050"})
    assert r.status_code == 400 and "attacker.example" in r.get_json()["error"]
    open_client = create_app(store, allowed_hosts=None).test_client()
    assert open_client.get("/api/runs", headers={"Host": "box.lan:8050"}).status_code == 200


# -- read only, never blocking the writer ----------------------------------------------------------


def test_the_server_cannot_write(client, store: Path) -> None:
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/api/runs").status_code == 405
    with reader.open_readonly(store) as st:
        assert st.conn.execute("PRAGMA query_only").fetchone()[0] == 1
        with pytest.raises(sqlite3.Error, match="readonly|read-only|query_only"):
            st.conn.execute("DELETE FROM runs")
        with pytest.raises(StoreError, match="read-only"):
            st.write_step("a", StepRecord(99, {("rms", "output"): [0.0, 0.0, 0.0]}))
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    for url in (
        "/",
        "/api/runs",
        "/api/run?run=a",
        "/api/heatmap?run=a",
        "/api/heatmap?run=a&since_step=10",
        "/api/report?run=a",
        "/api/compare?run_a=a&run_b=b",
    ):
        assert client.get(url).status_code == 200, url
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    assert layerscope.load(store, run="a", metric="rms").steps == [10, 20, 30]


def test_a_step_being_written_is_invisible_until_committed_and_does_not_block(client, store: Path) -> None:
    w = sqlite3.connect(store, isolation_level=None)
    try:
        w.execute("BEGIN IMMEDIATE")  # the writer holds the write lock mid-step
        (sid,) = w.execute(
            "SELECT id FROM series WHERE run_id=1 AND metric='std' AND site='output'"
        ).fetchone()
        w.execute(
            "INSERT INTO series_rows(series_id, step, vals) VALUES (?, 40, ?)",
            (sid, struct.pack("<3d", *[1.5] * 3)),
        )
        t0 = time.monotonic()
        d = _get(client, "/api/heatmap?run=a&metric=std&since_step=30")
        assert time.monotonic() - t0 < 1.0  # WAL: the read did not wait for the lock
        assert d["steps"] == []  # half a step is never visible
        w.execute("INSERT INTO steps(run_id, variant, step, source, time) VALUES (1, '', 40, 'live', 0)")
        w.execute("COMMIT")
    finally:
        w.close()
    d = _get(client, "/api/heatmap?run=a&metric=std&since_step=30")
    assert d["steps"] == [40] and d["values"] == [[1.5, 1.5, 1.5]]


def test_incremental_read_is_one_index_range_not_a_scan(store: Path) -> None:
    with reader.open_readonly(store) as st:
        plan = st.conn.execute(  # the query Store.load(since_step=) runs
            "EXPLAIN QUERY PLAN SELECT step, part, vals FROM series_rows WHERE series_id=? AND step>? "
            "ORDER BY step, part",
            (1, 10),
        ).fetchall()
    detail = " ".join(str(r[-1]) for r in plan)
    assert "PRIMARY KEY (series_id=? AND step>?)" in detail, detail
    assert "TEMP B-TREE" not in detail


# -- the server runner ------------------------------------------------------------------------------


def test_dashboard_binds_loopback_and_answers_over_http(store: Path) -> None:
    import urllib.request

    d = Dashboard(store, port=0).start()
    try:
        assert d.server.server_address[0] == "127.0.0.1" and d.url == f"http://127.0.0.1:{d.port}/"
        with urllib.request.urlopen(d.url + "api/runs", timeout=5) as r:
            assert [x["run"] for x in json.load(r)["runs"]] == ["a", "b", XSS]
    finally:
        d.stop()
        d.stop()  # safe twice


def test_port_in_use_is_one_line(store: Path, capsys) -> None:
    from layerscope.cli.main import main

    busy = bind("127.0.0.1", 0)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            bind("127.0.0.1", port)
        with pytest.raises(SystemExit) as e:
            main(["serve", str(store), "--port", str(port)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: port") and "--port" in err and len(err.splitlines()) == 1
    finally:
        busy.close()


def test_public_host_warns_and_prints_a_local_url(store: Path, capsys, monkeypatch) -> None:
    from layerscope.cli.main import main

    monkeypatch.setattr(Dashboard, "serve_forever", lambda self: self.server.server_close())
    main(["serve", str(store), "--host", "0.0.0.0", "--port", "0"])
    out = capsys.readouterr()
    assert "warning: --host 0.0.0.0" in out.err and "without a password" in out.err
    assert re.search(r"http://127\.0\.0\.1:\d+/", out.out) and "stopped" in out.out
    main(["serve", str(store), "--port", "0"])
    assert "warning" not in capsys.readouterr().err
    assert url_for("::", 80) == "http://[::1]:80/"


def test_bad_store_paths_fail_at_start_in_one_line(tmp_path: Path, capsys) -> None:
    from layerscope.cli.main import main

    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    for path, code, words in (
        (tmp_path, 2, "is a folder"),
        (text, 1, "not a layerscope store"),
        (tmp_path / "nowhere" / "runs.db", 2, "does not exist"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["serve", str(path), "--port", "0"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == code and words in err and len(err.splitlines()) == 1, err

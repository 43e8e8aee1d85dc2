"""``layerscope compare`` (run vs run) and ``layerscope view`` (the offline bundle), as subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.stores import two_runs


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return two_runs(tmp_path_factory.mktemp("cmp") / "runs.db")


def test_help_texts_have_examples(cli):
    for cmd in ("compare", "view"):
        r = cli(cmd, "--help")
        assert r.returncode == 0 and "Examples:" in r.stdout and f"layerscope {cmd} " in r.stdout
    r = cli("--help")
    assert "compare" in r.stdout and "view" in r.stdout


def test_compare_prints_where_runs_differ_and_draws_the_difference(cli, store, tmp_path):
    out = tmp_path / "diff.png"
    r = cli(
        "compare",
        str(store),
        "--run",
        "base",
        "--run",
        "lr_hi",
        "-o",
        str(out),
        "--figsize",
        "6,5",
        "--dpi",
        "80",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(
        "Compared rms (site output) of run lr_hi against run base on 12 common steps (10–120)"
    )
    assert "Largest difference: lr_hi − base is +" in r.stdout and "layer 6 (blocks.5), step 120" in r.stdout
    assert "By layer, the mean |lr_hi − base| is largest at layer 6 (blocks.5)" in r.stdout
    assert "1 are infinite in at least one run" in r.stdout
    assert lines[-1] == f"wrote {out}"
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_compare_json_relative_several_metrics_and_html(cli, store, tmp_path):
    out = tmp_path / "diff.html"
    r = cli("compare", str(store), "--metric", "rms,mean", "--relative", "--format", "json", "-o", str(out))
    assert r.returncode == 0, r.stderr  # the store holds exactly two runs: --run may be omitted
    facts = json.loads(r.stdout)
    assert [f["metric"] for f in facts] == ["rms", "mean"]
    assert facts[0]["a"] == "base" and facts[0]["b"] == "lr_hi" and facts[0]["unit"] == "%"
    assert facts[0]["max"]["layer"] == 6 and facts[0]["sentences"][0].startswith("Compared rms")
    text = out.read_text(encoding="utf-8")
    assert (
        text.count("plotly.js v") == 1 and " rms (&#37;)" in text and '"zmid":0.0' in text
    )  # % escaped for plotly


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "base"], "give exactly two runs"),
        (["--run", "base", "--run", "base"], "given twice"),
        (["--run", "base", "--run", "nope"], "run 'nope' not found"),
        (["--run", "base", "--run", "lr_hi", "--log"], "use --symlog"),
    ],
)
def test_compare_bad_runs(cli, store, args, message):
    r = cli("compare", str(store), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_view_writes_an_offline_bundle(cli, store, tmp_path):
    d = tmp_path / "report"
    r = cli("view", str(store), "--run", "lr_hi", "-o", str(d))
    assert r.returncode == 0, r.stderr
    # Every recorded metric at every recorded site (what `view --help` promises), not output only.
    assert "3 heatmaps: rms, rms (mlp_act), mean" in r.stdout
    text = (d / "index.html").read_text(encoding="utf-8")
    (js,) = d.glob("plotly-*.min.js")  # one shared copy beside the page, not inside it
    assert text.count("plotly.js v") == 0 and f'src="{js.name}"' in text
    assert '<section id="rms-output">' in text and '<section id="mean-output">' in text
    assert '<section id="rms-mlp-act">' in text
    assert "<code>rms</code> across layers and training steps" in text  # the analysis report
    assert text.count('class="plotly-graph-div"') == 9  # heatmap, profile, lines per section
    r = cli(
        "view",
        str(store),
        "--run",
        "lr_hi",
        "--site",
        "output",
        "--plotly",
        "inline",
        "-o",
        str(tmp_path / "one"),
    )
    assert r.returncode == 0, r.stderr
    assert "2 heatmaps: rms, mean" in r.stdout and [p.name for p in (tmp_path / "one").iterdir()] == [
        "index.html"
    ]
    assert (tmp_path / "one" / "index.html").read_text(encoding="utf-8").count("plotly.js v") == 1


def test_view_site_all_and_errors(cli, store, tmp_path):
    d = tmp_path / "sites"
    r = cli("view", str(store), "--run", "base", "--metric", "rms", "--site", "all", "-o", str(d))
    assert r.returncode == 0, r.stderr
    assert "rms, rms (mlp_act)" in r.stdout
    assert '<section id="rms-mlp-act">' in (d / "index.html").read_text(encoding="utf-8")
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("view", str(store), "--run", "base", "-o", str(f))
    assert r.returncode == 2 and "is a file; give a folder" in r.stderr
    r = cli("view", str(store), "-o", str(tmp_path / "never"))
    assert r.returncode == 2 and "choose one with --run" in r.stderr
    assert not (tmp_path / "never").exists()  # nothing created when the input is wrong

"""``layerscope plot`` as a user runs it (a subprocess): every output format and option, and one
clear line with exit code 2 for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.stores import two_runs


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return two_runs(tmp_path_factory.mktemp("store") / "runs.db")


def png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image as mpimg

    h, w = mpimg.imread(str(path)).shape[:2]
    return w, h


def ok(r) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_help_lists_every_option_and_examples(cli):
    out = ok(cli("plot", "--help"))
    for flag in (
        "--kind",
        "--cmap",
        "--vmin",
        "--vmax",
        "--log",
        "--symlog",
        "--annotate",
        "--colorbar",
        "--title",
        "--figsize",
        "--dpi",
        "--true-steps",
        "--shared-scale / --independent-scale",
        "Examples:",
        ".html",
    ):
        assert flag in out, flag


def test_png_with_paper_options(cli, store, tmp_path):
    out = tmp_path / "rms.png"
    r = ok(
        cli(
            "plot",
            str(store),
            "--run",
            "lr_hi",
            "-o",
            str(out),
            "--figsize",
            "5,4",
            "--dpi",
            "100",
            "--colorbar",
            "bottom",
            "--title",
            "RMS",
            "--annotate",
            "--cmap",
            "viridis",
        )
    )
    assert "wrote" in r and "12 steps x 6 layers, rms" in r
    assert png_size(out) == (500, 400)


@pytest.mark.parametrize(
    "args, suffix, magic",
    [
        (["--metric", "mean", "--symlog"], ".svg", b"<?xml"),
        (["--log", "--true-steps", "--vmin", "0.05"], ".pdf", b"%PDF"),
        (["--kind", "lines", "--site", "mlp_act"], ".png", b"\x89PNG"),
    ],
)
def test_formats_and_scales(cli, store, tmp_path, args, suffix, magic):
    out = tmp_path / f"x{suffix}"
    ok(cli("plot", str(store), "--run", "base", "-o", str(out), *args))
    assert out.read_bytes()[:5].startswith(magic)


def test_small_multiples_from_comma_lists(cli, store, tmp_path):
    out = tmp_path / "grid.png"
    r = ok(
        cli(
            "plot",
            str(store),
            "--run",
            "base",
            "--metric",
            "rms",
            "--site",
            "output,mlp_act",
            "-o",
            str(out),
            "--independent-scale",
            "--cols",
            "1",
        )
    )
    assert "rms, rms (mlp_act)" in r
    w, h = png_size(out)
    assert h > w  # one column: panels stacked


def test_html_output_with_switcher(cli, store, tmp_path):
    out = tmp_path / "all.html"
    r = ok(cli("plot", str(store), "--run", "lr_hi", "--metric", "all", "-o", str(out)))
    assert "mean, rms" in r.replace("rms, mean", "mean, rms")
    text = out.read_text(encoding="utf-8")
    assert text.count("plotly.js v") == 1 and '"switcher"' in text and "+inf" in text


def test_csv_source(cli, tmp_path):
    csv = tmp_path / "acts.csv"
    csv.write_text("step,1,2,3\n1000,0.1,0.2,\n2000,0.2,nan,0.5\n5000,0.3,0.4,inf\n")
    out = tmp_path / "csv.png"
    r = ok(cli("plot", str(csv), "--metric", "max_abs", "--true-steps", "-o", str(out)))
    assert "3 steps x 3 layers, max_abs" in r and out.exists()


def test_annotate_on_a_large_matrix_warns_and_still_draws(cli, tmp_path):
    csv = tmp_path / "big.csv"
    rows = ["step," + ",".join(str(j) for j in range(1, 5))]
    rows += [f"{s}," + ",".join(f"{0.01 * j * s:.4f}" for j in range(1, 5)) for s in range(1, 46)]
    csv.write_text("\n".join(rows) + "\n")
    r = cli("plot", str(csv), "--annotate", "-o", str(tmp_path / "big.png"))
    assert r.returncode == 0, r.stderr
    assert "warning: --annotate skipped: 45 steps x 4 layers is more than 40 x 40" in r.stderr
    assert (tmp_path / "big.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--log", "--symlog"], "--log and --symlog exclude each other"),
        (["--figsize", "7"], "not two numbers"),
        (["--cmap", "magmaa"], "unknown colormap 'magmaa'"),
        (["--metric", "nope"], "metric 'nope' was not recorded"),
        (["--site", "attn_out"], "site 'attn_out' has no 'rms' values"),
        (["--linthresh", "0.1"], "--linthresh only applies with --symlog"),
        (["--vmin", "2", "--vmax", "1"], "must be greater than vmin"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, store, tmp_path, args, message):
    out = tmp_path / "bad.png"
    r = cli("plot", str(store), "--run", "base", "-o", str(out), *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_output_paths(cli, store, tmp_path):
    r = cli("plot", str(store), "--run", "base", "-o", str(tmp_path / "x.jpg"))
    assert r.returncode == 2 and "end the file name with one of .png, .svg, .pdf, .html" in r.stderr
    r = cli("plot", str(store), "--run", "base", "-o", str(tmp_path / "no" / "x.png"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr

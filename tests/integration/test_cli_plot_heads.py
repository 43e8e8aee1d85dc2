"""``layerscope plot`` on the sites that are not one value per layer: ``attn`` (per head: folded
over the heads, one head, or the head x layer map at one step) and ``logits`` (one value per
step: lines). A store of known values, read back through the CLI as a user runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layerscope.cli.main import main
from layerscope.store import LayerInfo, StepRecord, Store

N_LAYERS, N_HEADS = 3, 4
STEPS = [10, 20, 30, 40]


def head_values(step: int) -> np.ndarray:
    """(layers, heads): head h of layer l holds step + 10 l + h (max at the last head, mean at 1.5)."""
    return np.array([[step + 10.0 * la + h for h in range(N_HEADS)] for la in range(N_LAYERS)])


def logits_column(step: int) -> list[float]:
    return [float("nan")] * (N_LAYERS - 1) + [step / 10.0]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("heads") / "runs.db"
    with Store(path) as st:
        st.create_run(
            "r",
            [LayerInfo(i + 1, f"h.{i}") for i in range(N_LAYERS)],
            config={"logits": {"layer": N_LAYERS, "module": "lm_head"}},
        )
        st.write_steps(
            "r",
            [
                StepRecord(
                    s,
                    {
                        ("rms", "output"): [1.0, 2.0, 3.0],
                        ("max_logit", "attn"): head_values(s),
                        ("entropy", "attn"): head_values(s) / 100,
                        ("max_logit", "logits"): logits_column(s),
                        ("log_z", "logits"): logits_column(s),
                    },
                )
                for s in STEPS
            ],
        )
    return path


@pytest.fixture
def run(capsys):
    """``layerscope ARGS`` in this process, through the CLI's one error handler: (exit code, stdout + stderr)."""

    def invoke(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
        got = capsys.readouterr()
        return int(code or 0), got.out + got.err

    return invoke


def png_ok(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attn_without_heads_folds_max_logit_by_max_and_says_so(run, store, tmp_path, monkeypatch) -> None:
    import layerscope.render as render

    drawn = []
    real = render.plot
    monkeypatch.setattr(render, "plot", lambda data, *a, **k: drawn.append(data) or real(data, *a, **k))
    code, out = run(
        "plot", str(store), "--site", "attn", "--metric", "max_logit", "-o", str(tmp_path / "a.png")
    )
    assert code == 0, out
    assert "max_logit (attn, max over 4 heads)" in out
    (hm,) = drawn
    np.testing.assert_array_equal(hm.values, np.stack([head_values(s).max(axis=1) for s in STEPS]))
    png_ok(tmp_path / "a.png")


@pytest.mark.parametrize(
    "metric, heads, expect",
    [
        ("entropy", None, lambda v: v.mean(axis=1)),  # the default for a mean: mean
        ("max_logit", "min", lambda v: v.min(axis=1)),
        ("max_logit", "mean", lambda v: v.mean(axis=1)),
        ("max_logit", "2", lambda v: v[:, 2]),
    ],
)
def test_heads_reduction(run, store, tmp_path, metric, heads, expect) -> None:
    from layerscope.cli._heads import parse_heads
    from layerscope.cli.plot import select_heatmaps

    (hm,) = select_heatmaps(str(store), None, [metric], ["attn"], heads=parse_heads(None, None, heads))  # type: ignore[arg-type]
    scale = 100 if metric == "entropy" else 1
    np.testing.assert_allclose(hm.values, np.stack([expect(head_values(s) / scale) for s in STEPS]))
    code, out = run(
        "plot", str(store), "--site", "attn", "--metric", metric, *(["--heads", heads] if heads else []),
        "-o", str(tmp_path / "x.svg"),
    )  # fmt: skip
    assert code == 0, out
    label = f"head {heads}" if heads and heads.isdigit() else f"{heads or 'mean'} over 4 heads"
    assert f"{metric} (attn, {label})" in out
    assert label in (tmp_path / "x.svg").read_text()  # the colour-bar label says how the heads were folded


def test_attn_site_alone_defaults_to_max_logit_and_works_in_html_and_view(run, store, tmp_path) -> None:
    code, out = run("plot", str(store), "--site", "attn", "-o", str(tmp_path / "a.html"))
    assert code == 0 and "max_logit (attn, max over 4 heads)" in out, out
    code, out = run("view", str(store), "-o", str(tmp_path / "v"))
    assert code == 0, out
    assert (tmp_path / "v" / "index.html").is_file()


def test_head_map_at_one_step(run, store, tmp_path, monkeypatch) -> None:
    import layerscope.render.heads as rh

    seen = []
    real = rh.plot_heads
    monkeypatch.setattr(rh, "plot_heads", lambda hm, out, **k: seen.append(hm) or real(hm, out, **k))
    out_png = tmp_path / "h.png"
    code, out = run(
        "plot", str(store), "--site", "attn", "--metric", "max_logit", "--heads", "--step", "30",
        "--title", "heads", "--vmin", "0", "-o", str(out_png),
    )  # fmt: skip
    assert code == 0, out
    assert "4 heads x 3 layers, max_logit (attn) at step 30" in out
    np.testing.assert_array_equal(seen[0].values, head_values(30).T)
    png_ok(out_png)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--heads", "--step", "25"], "nearest recorded steps are 10, 20, 30, 40"),
        (["--heads", "--step", "1000"], "nearest recorded steps are 30, 40"),
        (["--heads"], "add --step N"),
        (["--heads", "--step", "10,20"], "draws one step"),
        (["--heads", "7"], "head 7 is not in max_logit/attn"),
        (["--heads", "top"], "'top' is not max, mean, min or a head number"),
        (["--heads", "--step", "10", "--log"], "--log do not apply to the head x layer map"),
        (["--heads", "--step", "10", "--metric", "all"], "draws one metric"),
        (["--step", "10"], "add --kind profile or --heads"),
    ],
)
def test_bad_heads_input_is_one_line(run, store, tmp_path, args, says) -> None:
    base = ["plot", str(store), "--site", "attn"] + ([] if "--metric" in args else ["--metric", "max_logit"])
    code, out = run(*base, *args, "-o", str(tmp_path / "x.png"))
    assert code == 2, out
    assert out.count("\n") == 1 and says in out, out
    assert not (tmp_path / "x.png").exists()


def test_heads_on_a_series_without_heads_names_the_sites_that_have_them(run, store, tmp_path) -> None:
    for extra in (["--heads", "max"], ["--heads", "--step", "10"]):
        code, out = run(
            "plot", str(store), "--site", "output", "--metric", "rms", *extra, "-o", str(tmp_path / "x.png")
        )
        assert code == 2, out
        assert "holds one value per layer" in out and "attn (entropy, max_logit)" in out, out


def test_logits_are_lines_of_one_series(run, store, tmp_path, monkeypatch) -> None:
    import layerscope.render as render

    calls = []
    real = render.plot
    monkeypatch.setattr(render, "plot", lambda data, *a, **k: calls.append((data, k)) or real(data, *a, **k))
    code, out = run("plot", str(store), "--site", "logits", "-o", str(tmp_path / "l.png"))
    assert code == 0, out
    assert "4 steps of lm_head" in out and "log_z (logits)" in out and "max_logit (logits)" in out
    data, kw = calls[0]
    assert kw["kind"] == "lines"
    for hm in data:
        assert hm.layers == [N_LAYERS] and hm.layer_names == ["lm_head"]
        np.testing.assert_array_equal(hm.values[:, 0], [s / 10 for s in STEPS])
    code, out = run(
        "plot", str(store), "--site", "logits", "--kind", "profile", "-o", str(tmp_path / "p.png")
    )
    assert code == 2 and "one value per step" in out


def test_all_sites_heatmap_leaves_logits_out_with_a_note(run, store, tmp_path) -> None:
    code, out = run("plot", str(store), "--site", "all", "--metric", "all", "-o", str(tmp_path / "all.png"))
    assert code == 0, out
    assert "note: left out log_z, max_logit at site logits" in out
    assert "max_logit (attn, max over 4 heads)" in out and "rms" in out


def test_help_shows_heads_and_examples(run, store) -> None:
    code, out = run("plot", "--help")
    assert code == 0
    assert "--heads" in out and "max for max_logit, mean for entropy" in out
    assert "--heads --step 500" in out and "--site logits" in out

"""``layerscope demo``: train the built-in 12-layer GPT, record it, draw it, write its report."""

from __future__ import annotations

import click


@click.command("demo")
@click.option(
    "--out",
    "out",
    default="layerscope-demo",
    show_default=True,
    metavar="DIR",
    help="Folder for runs.db, heatmap.png and report.md.",
)
@click.option(
    "--steps",
    type=click.IntRange(1, 1_000_000),
    default=600,
    show_default=True,
    help="Optimizer steps to train.",
)
@click.option(
    "--every",
    type=click.IntRange(1, 1_000_000),
    default=20,
    show_default=True,
    help="Record every N-th step.",
)
@click.option(
    "--layers",
    "n_layer",
    type=click.IntRange(1, 96),
    default=12,
    show_default=True,
    help="Number of transformer blocks.",
)
@click.option("--metric", default="rms", show_default=True, help="Metric drawn in heatmap.png.")
@click.option(
    "--threads", type=click.IntRange(1, 256), default=None, help="Torch CPU threads (default: torch's)."
)
def demo(out: str, steps: int, every: int, n_layer: int, metric: str, threads: int | None) -> None:
    """Train a tiny GPT on a generated corpus while recording every layer (block outputs and MLP
    activations, with histograms), then draw the heatmap and write the report.

    Needs no download: the model is built from a config and the corpus is generated. Trains for
    about 90 s on a 2-core machine with the defaults.

    \b
    Examples:
      layerscope demo
      layerscope demo --steps 300 --every 10 --layers 6 --out /tmp/demo
      layerscope demo --metric kurtosis
    """
    import time
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .._io import check_outputs_are_not_inputs
    from ..errors import ConfigError, NotFoundError, escape_controls, quote
    from ..render import plot
    from ..stats import get_metric
    from ..store import Store, load
    from ..testing import GPTConfig, TrainConfig, train

    get_metric(metric)  # fail on a typo before training
    # Two forward sites and the histograms, so that every view of the README can be tried on the
    # demo, and each block's update (update-to-weight ratio at the optimizer steps).
    cfg = TrainConfig(
        steps=steps,
        every=every,
        model=GPTConfig(n_layer=n_layer),
        threads=threads,
        sites=("output", "mlp_act", "update"),
        metrics=(*TrainConfig.metrics, "hist"),
    )
    if metric not in cfg.metrics:
        cfg.metrics = (*cfg.metrics, metric)
    if steps // every < 1:
        raise ConfigError(
            f"--every {every} is larger than --steps {steps}: nothing would be recorded; lower --every."
        )
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotFoundError(f"--out {quote(out)} is a file; give a folder.")
    db = out_dir / "runs.db"
    # The figure and the report must not land on the store (a link left in the folder, say).
    check_outputs_are_not_inputs(
        [("--out", out_dir / "heatmap.png"), ("--out", out_dir / "report.md")], [("the demo's store", db)]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if db.exists():  # a fresh demo run each time; other runs in the store are left alone
        with Store(db) as st:
            if "demo" in st.run_names():
                st.delete_run("demo")

    t0 = time.monotonic()
    with Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("train", total=steps, loss="-")

        def on_step(step: int, loss: float) -> None:
            bar.update(task, completed=step, loss=f"{loss:.3f}")

        _, losses = train(cfg, db, run="demo", on_step=on_step)
    took = time.monotonic() - t0

    hm = load(db, run="demo", metric=metric)
    png = plot(hm, out_dir / "heatmap.png", title=f"{metric} of each block's output — tiny GPT demo")
    click.echo(
        f"trained {steps} steps in {took:.0f}s (loss {losses[0]:.2f} -> {losses[-1]:.2f}); "
        f"recorded {len(hm.steps)} steps x {len(hm.layers)} layers"
    )
    ratio = load(db, run="demo", metric="ratio", site="update")
    png_update = plot(
        ratio,
        out_dir / "update-ratio.png",
        scale="log",
        title="update / weight norm ratio of each block (log) — tiny GPT demo",
    )
    click.echo(escape_controls(f"wrote {db}"))
    click.echo(escape_controls(f"wrote {png}"))
    click.echo(escape_controls(f"wrote {png_update}"))
    from ..analysis import report

    md = report(hm).save(out_dir / "report.md")
    click.echo(escape_controls(f"wrote {md}"))

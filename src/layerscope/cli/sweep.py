"""``layerscope sweep``: statistics of every checkpoint in a folder, into a run store."""

from __future__ import annotations

from typing import Any

import click

from ..defaults import DEFAULT_METRICS
from ._common import echo_json, format_option

# One string so that `layerscope sweep --help` and docs/sweep.md show the same torchrun form.
TORCHRUN_FORM = "torchrun --nproc-per-node 2 -m -- layerscope sweep CKPT_DIR ..."


@click.command("sweep")
@click.argument("ckpt_dir", metavar="CKPT_DIR", type=click.Path(path_type=str))
@click.option(
    "--model",
    "model",
    default=None,
    metavar="PKG.MODULE:FACTORY",
    help="Function that builds the model (called with no arguments).",
)
@click.option(
    "--hf",
    is_flag=True,
    help="Build the model from the config.json found with the checkpoints (Hugging Face) instead of --model.",
)
@click.option(
    "--probe",
    required=True,
    metavar="FILE",
    help="Input batch: .pt/.npy/.npz/.safetensors (a tensor, or a dict of tensors passed as keyword "
    "arguments), or a text file with --tokenizer bytes.",
)
@click.option(
    "--probe-fn",
    "probe_fn",
    default=None,
    metavar="PKG.MODULE:FN",
    help="Function fn(model, batch) that runs the probe (default: model(batch)), for a model whose "
    "forward does not run every recorded layer, e.g. an autoencoder's decoder. A .py file works too.",
)
@click.option("--store", required=True, metavar="STORE", help="Run store to write (created if missing).")
@click.option(
    "--run",
    "run",
    required=True,
    metavar="NAME",
    help="Run to write; an existing run of the same sweep (model, folder, settings) is continued.",
)
@click.option(
    "--metrics",
    "--metric",
    "metrics",
    default=",".join(DEFAULT_METRICS),
    show_default=True,
    metavar="LIST",
    help="Comma-separated metric names, or 'all'.",
)
@click.option(
    "--sites",
    "--site",
    "sites",
    default="output",
    show_default=True,
    metavar="LIST",
    help="Comma-separated sites: output, mlp_act, attn_out, mlp_out, mlp_down_in, or 'all' the model has; "
    "weight (the checkpoint's parameters), update (the change since the previous checkpoint).",
)
@click.option("--layers", default=None, metavar="GLOB", help="Modules to record (default: the block stack).")
@click.option(
    "--step-regex",
    default=None,
    metavar="REGEX",
    help=r"Step from the path relative to CKPT_DIR: group 1 or (?P<step>...), e.g. 'epoch(\d+)'.",
)
@click.option(
    "--tokenizer",
    type=click.Choice(["bytes"]),
    default=None,
    help="Read a text --probe as UTF-8 bytes (token ids 0..255).",
)
@click.option(
    "--seq-len",
    type=click.IntRange(1, None),
    default=None,
    metavar="N",
    help="Split a text probe into rows of N tokens (default: one row).",
)
@click.option("--force", is_flag=True, help="Recompute steps already in the store.")
@click.option(
    "--resume",
    is_flag=True,
    help="Add to --run even if it holds another recording (another model, checkpoint folder or "
    "settings); without it such a run is refused.",
)
@click.option(
    "--trust-checkpoints",
    "trust",
    is_flag=True,
    help="Allow checkpoints that are arbitrary pickles. Loading one can run any code it holds: "
    "only for files you made or trust.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 512),
    default=1,
    show_default=True,
    help="Processes on this machine, this one included (without torchrun).",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    metavar="DEV",
    help="cpu, cuda, cuda:N, or auto (cuda:LOCAL_RANK when a GPU is there).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=None,
    metavar="N",
    help="Torch threads per process (default: torch's; cores / --workers in a pool).",
)
@click.option(
    "--mask",
    default=None,
    metavar="KEY",
    help="Count real tokens only: the probe's token-mask key, e.g. attention_mask (a dict probe).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Evaluate the live watch's default rules over the checkpoints' values in step order "
    "(non-finite values, jumps of max_abs/top_ratio/kurtosis/max_logit, update ratios): each alert "
    "is printed once and stored in the run as an event (layerscope export --events).",
)
@click.option(
    "--on-alert",
    "on_alert",
    type=click.Choice(["warn", "stop"]),
    default="warn",
    show_default=True,
    help="With --watch: warn (print, store, sweep on) or stop (end the sweep at the first alert, exit 1; "
    "the steps swept so far are kept).",
)
@format_option
def sweep(
    ckpt_dir: str,
    model: str | None,
    hf: bool,
    probe: str,
    probe_fn: str | None,
    store: str,
    run: str,
    metrics: str,
    sites: str,
    layers: str | None,
    step_regex: str | None,
    tokenizer: str | None,
    seq_len: int | None,
    force: bool,
    resume: bool,
    trust: bool,
    workers: int,
    device: str,
    threads: int | None,
    mask: str | None,
    watch: bool,
    on_alert: str,
    fmt: str,
) -> int:
    """Record the statistics of every checkpoint in CKPT_DIR, one step each, into STORE.

    Finds step_N.pt, ckpt-N.safetensors, model_N.bin, Hugging Face checkpoint-N/ folders (sharded
    too), Lightning .ckpt and nanoGPT ckpt.pt files. Steps already in the run are skipped (--force
    redoes them), so an interrupted sweep continues where it stopped. Checkpoints are never
    unpickled beyond tensors unless --trust-checkpoints is given. A checkpoint that cannot be used
    gets one line and the sweep goes on; the exit code is then 1. If the probe's forward leaves
    recorded layers without an activation (an autoencoder whose forward is its encoder), the sweep
    stops before writing anything: pass --probe-fn to say how the probe runs.

    Under torchrun, write `-m --` before `layerscope`: torchrun would otherwise read our --run as
    its own --run-path. Each rank sweeps every N-th checkpoint; rank 0 writes the store. See
    docs/sweep.md for several machines.

    \b
    Examples:
      layerscope sweep ckpts/ --model layerscope.testing.model:tiny_gpt --probe probe.pt \\
          --store runs.db --run sweep
      layerscope sweep pythia-70m/ --hf --probe probe.pt --store runs.db --run pythia --workers 4
      layerscope sweep runs/ --model mypkg.model:build --probe prompt.txt --tokenizer bytes \\
          --seq-len 64 --store runs.db --run sweep --step-regex 'epoch(\\d+)'
      layerscope sweep ae/ --model ae.py:build --probe-fn ae.py:reconstruct --probe x.pt \\
          --store runs.db --run ae
      torchrun --nproc-per-node 2 -m -- layerscope sweep ckpts/ --model mypkg.model:build \\
          --probe probe.pt --store runs.db --run sweep
      layerscope sweep ckpts/ --model mypkg.model:build --probe probe.pt --sites output,attn \\
          --store runs.db --run sweep --watch --on-alert stop
    """
    import os

    import torch.distributed as dist

    from ..errors import ConfigError, LayerscopeError
    from ..sweep.runner import SweepConfig, run_sweep

    cfg = SweepConfig(
        ckpt_dir,
        store,
        run,
        probe,
        model=model,
        probe_fn=probe_fn,
        hf=hf,
        metrics=metrics,
        sites=sites,
        layers=layers,
        step_regex=step_regex,
        tokenizer=tokenizer,
        seq_len=seq_len,
        force=force,
        resume=True if resume else None,  # without --resume: only a run of this same sweep continues
        trust=trust,
        workers=workers,
        device=device,
        threads=threads,
        mask=mask,
        watch=watch,
        on_alert=on_alert,
    )
    try:  # set by torchrun (and other launchers) for every process it starts
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        launched = "RANK" in os.environ and world > 1 and "MASTER_ADDR" in os.environ
        rank = int(os.environ["RANK"]) if launched else 0
    except ValueError:
        raise ConfigError(
            f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} are not "
            "whole numbers; launch with torchrun, or unset them."
        ) from None
    if launched and workers > 1:
        raise ConfigError(
            "--workers with torchrun: torchrun already starts one sweep process per rank; "
            "drop --workers, or run without torchrun."
        )
    from pathlib import Path

    existed = Path(store).exists()
    own_group = launched and not dist.is_initialized()
    if own_group:
        dist.init_process_group("gloo")  # CPU collectives: only step records travel between ranks
    try:
        listener = _Display(fmt == "table") if rank == 0 else None
        try:
            result = run_sweep(cfg, listener)  # type: ignore[arg-type]  # _Display implements SweepListener
        except LayerscopeError as e:
            if rank != 0:  # rank 0 says it once
                raise SystemExit(e.exit_code) from None
            if not existed:
                _remove_if_empty(store)  # a refused sweep leaves no empty store behind
            raise
        finally:
            if listener is not None:
                listener.stop()
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        if fmt == "json":
            echo_json(result.to_dict())
        else:
            _summary(result, ckpt_dir)
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)  # 1: some checkpoints failed (said above)
    return 0


def _remove_if_empty(store: str) -> None:
    """Delete a store this sweep created if no step was recorded into it (the sweep was refused)."""
    from pathlib import Path

    from ..errors import LayerscopeError
    from ..store import Store

    p = Path(store)
    if not p.is_file():
        return
    try:
        with Store(p, readonly=True) as st:
            if any(row[5] for row in st.run_table()):  # steps recorded: keep everything
                return
    except LayerscopeError:
        return  # not a store we can read: leave it alone
    for f in (p, p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm")):
        f.unlink(missing_ok=True)


class _Display:
    """The progress bar (with ETA) and the one-line problems, on stderr; the summary goes to stdout.

    Implements every method of ``layerscope.sweep.SweepListener`` (not subclassed, so that importing
    this module for ``--help`` does not import torch)."""

    def __init__(self, bar: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.bar_on = bar
        self.progress: Any = None
        self.task: Any = None

    def on_start(self, todo: int, skipped: int, processes: int) -> None:
        if not self.bar_on or todo == 0:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("sweep", total=todo, last="")

    def _line(self, text: str) -> None:
        # soft_wrap: one problem, one line, whatever the terminal's width (greppable, as the tests do);
        # a file name holding a newline or an escape sequence is escaped, never printed raw.
        from ..errors import escape_controls

        (self.progress.console if self.progress is not None else self.console).print(
            escape_controls(text), markup=False, highlight=False, soft_wrap=True
        )

    def on_problem(self, problem: Any) -> None:
        self._line(f"error: {problem.message}")

    def on_outcome(self, outcome: Any) -> None:
        if outcome.error is not None:
            self._line(f"error: {outcome.error}")
        if self.progress is not None:
            self.progress.update(self.task, advance=1, last=f"step {outcome.step}")

    def on_identical(self, name: str, same_as: str) -> None:
        self._line(f"warning: {name} holds the same weights as {same_as}")

    def on_warning(self, message: str) -> None:
        self._line(f"warning: {message}")

    def on_alert(self, alert: Any) -> None:
        self._line(f"layerscope watch: {alert.message}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _summary(res: Any, ckpt_dir: str) -> None:
    from ..errors import escape_controls

    def echo(text: str) -> None:
        click.echo(escape_controls(text))

    n = len(res.written)
    per = f", {res.seconds / n:.2f}s per checkpoint" if n else ""
    procs = f" on {res.processes} processes" if res.processes > 1 else ""
    echo(
        f"swept {n} checkpoint{'s' * (n != 1)} of {ckpt_dir} into run {res.run!r} of {res.store} "
        f"in {res.seconds:.1f}s{per}{procs}"
    )
    if res.skipped:
        echo(
            f"skipped {len(res.skipped)} step{'s' * (len(res.skipped) != 1)} already in the run "
            "(--force recomputes them)"
        )
    if res.identical:
        echo(
            f"{len(res.identical)} checkpoint{'s' * (len(res.identical) != 1)} with the same weights as another:"
        )
        for a, b in res.identical:
            echo(f"  {a} = {b}")
    if res.failed:
        echo(f"{len(res.failed)} checkpoint{'s' * (len(res.failed) != 1)} failed (the others are recorded):")
        for p in res.failed:
            echo(f"  {p.message.splitlines()[0] if p.message else ''}")

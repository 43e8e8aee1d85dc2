"""Send layerscope's numbers where people already look: TensorBoard, Weights & Biases, MLflow.

A :class:`Sink` turns recorded steps into per-layer scalars (``layerscope/<metric>/<site>/layer_<i>``),
recorded ``hist`` counts into per-layer histograms (``layerscope/hist/<site>/layer_<i>``: TensorBoard's
``add_histogram_raw``, W&B's ``wandb.Histogram(np_histogram=...)``; MLflow has no histogram type)
and a :class:`~layerscope.store.Heatmap` into a PNG image (``layerscope/heatmap/<metric>/<site>``).
Each sink imports its package on first use; a missing package is a :class:`~layerscope.errors.ConfigError`
that names the extra to install.

Three ways in, one code path:

- live, from any loop: give the ``Recorder`` a :class:`SinkStore`; every step the recorder writes
  (rank 0, at its flushes: no extra host sync) is also sent to the sinks::

      from torch.utils.tensorboard import SummaryWriter
      from layerscope.integrations import SinkStore, TensorBoardSink
      tb = SummaryWriter("tb")
      with SinkStore("runs.db", [TensorBoardSink(tb)]) as st, layerscope.Recorder(model, st, run="a") as rec:
          ...  # train, rec.step(step)
      st.log_images("a")   # the heatmaps, once, at the end

- after the fact: ``log_run("runs.db", "a", to=tb)`` sends a finished run's scalars and heatmaps;
- one picture: ``log_heatmap(layerscope.load("runs.db", metric="rms"), to=tb, step=1000)``.

The Hugging Face and Lightning callbacks take the same sinks (or the names ``"tensorboard"``,
``"wandb"``, ``"mlflow"``, ``"auto"``) as ``log_to=``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..store import Heatmap, StepRecord, Store
from ._histograms import HistogramData, attach_hists, histogram_data, layer_stats
from ._images import _read_png, render_png

SINK_NAMES = ("tensorboard", "wandb", "mlflow")


def _need(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise a ConfigError naming the extra that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"{what} needs the {module.split('.')[0]!r} package, which is not installed ({e}); "
            f"install it with: pip install 'layerscope[{extra}]'"
        ) from None


class Sink:
    """Where per-layer scalars and heatmap images go. Subclasses implement :meth:`add_scalars`
    and :meth:`add_image`; everything else (tags, rendering, which metrics) is shared.

    Args:
        scalars: log per-layer scalars of every recorded step: ``True`` (all scalar metrics),
            ``False``, or the metric names to log. 48 layers x 4 metrics is ~200 scalars per step.
        images: metrics whose heatmap is drawn by :meth:`log_heatmap` callers such as
            :meth:`SinkStore.log_images`: ``None`` (every recorded metric) or a list (``()`` for none).
        prefix: the first part of every tag.
        plot_options: passed to :func:`layerscope.plot` (``cmap``, ``dpi``, ...).
        histograms: log the recorded ``hist`` counts of each layer as a histogram (when the backend
            has histograms and the run recorded ``hist``).
    """

    kind = "sink"

    def __init__(
        self,
        *,
        scalars: bool | Sequence[str] = True,
        images: Sequence[str] | None = None,
        prefix: str = "layerscope",
        plot_options: dict[str, Any] | None = None,
        histograms: bool = True,
    ) -> None:
        if isinstance(scalars, str) or isinstance(images, str):
            raise ConfigError(
                f"scalars={scalars!r}, images={images!r}: pass metric names as a list, e.g. images=['rms']."
            )
        self.scalars = scalars
        self.images = None if images is None else tuple(images)
        self.prefix = prefix.strip("/")
        self.plot_options = {"dpi": 100, **(plot_options or {})}
        self.histograms = bool(histograms)

    # -- what a backend implements -------------------------------------------------------------
    def add_scalars(self, values: dict[str, float], step: int) -> None:
        """Log ``tag -> value`` at ``step``."""
        raise NotImplementedError

    def add_image(self, tag: str, png: Path, step: int) -> None:
        """Log the PNG file ``png`` as image ``tag`` at ``step``."""
        raise NotImplementedError

    def add_histogram(self, tag: str, hist: HistogramData, step: int) -> None:
        """Log one layer's histogram at ``step`` (backends without histograms ignore it)."""

    def add_alert(self, message: str, step: int) -> None:
        """Send a watch alert as text (the default: a no-op, for backends without text)."""

    def flush(self) -> None:
        """Push buffered data to disk or the service (called after each batch of steps)."""

    def close(self) -> None:
        """Release what this sink opened itself; a writer or run the user passed stays open."""

    # -- tags ----------------------------------------------------------------------------------
    def scalar_tag(self, metric: str, site: str, layer: int, n_layers: int) -> str:
        # Zero-padded so that a dashboard's lexicographic sort is the depth order (layer_02 < layer_10).
        return f"{self.prefix}/{metric}/{site}/layer_{layer:0{len(str(max(n_layers, 1)))}d}"

    def image_tag(self, metric: str, site: str) -> str:
        return f"{self.prefix}/heatmap/{metric}/{site}"

    def wants_scalars(self, metric: str) -> bool:
        return self.scalars is True or (not isinstance(self.scalars, bool) and metric in self.scalars)

    def wants_image(self, metric: str) -> bool:
        return self.images is None or metric in self.images

    # -- shared logic --------------------------------------------------------------------------
    def hist_tag(self, site: str, layer: int, n_layers: int) -> str:
        return f"{self.prefix}/hist/{site}/layer_{layer:0{len(str(max(n_layers, 1)))}d}"

    def log_histograms(self, records: Iterable[StepRecord], edges: Sequence[float] | None) -> None:
        """Log the recorded ``hist`` counts of each layer (``edges``: the run's bin edges)."""
        if not self.histograms or not edges:
            return
        e = np.asarray(edges, dtype=np.float64)
        for rec in records:
            for site, counts in (rec.hists or {}).items():
                c = np.asarray(counts, dtype=np.float64)
                for j in range(c.shape[0]):
                    hd = histogram_data(c[j], e, layer_stats(rec, site, j))
                    if hd is not None:
                        self.add_histogram(self.hist_tag(site, j + 1, c.shape[0]), hd, int(rec.step))

    def log_records(self, records: Iterable[StepRecord], hist_edges: Sequence[float] | None = None) -> None:
        """Log the per-layer scalars of recorded steps (what the recorder writes to the store), and
        their histograms when ``hist_edges`` (the run's bin edges) are given."""
        records = list(records)
        if hist_edges is not None:
            self.log_histograms(records, hist_edges)
        if self.scalars is False:
            self.flush()
            return
        for rec in records:
            values: dict[str, float] = {}
            for (metric, site), vals in rec.values.items():
                if not self.wants_scalars(metric):
                    continue
                arr = np.asarray(vals, dtype=np.float64)
                if arr.ndim == 2:  # per head: one scalar per layer (max over heads of a max, else the mean)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN layers stay NaN
                        arr = np.nanmax(arr, 1) if metric.startswith("max") else np.nanmean(arr, 1)
                n = len(arr)
                for j, v in enumerate(arr):
                    values[self.scalar_tag(metric, site, j + 1, n)] = float(v)
            if values:
                self.add_scalars(values, int(rec.step))
        self.flush()

    def log_heatmap(self, heatmap: Heatmap, step: int | None = None, *, title: str | None = None) -> Path:
        """Draw ``heatmap`` and log it as an image at ``step`` (default: its last step).

        Returns the path of the PNG that was logged (in a temporary folder; copy it to keep it).
        """
        if not heatmap.steps:
            raise ConfigError(
                f"heatmap {heatmap.metric!r} of run {heatmap.run!r} has no steps; record some first."
            )
        step = int(heatmap.steps[-1] if step is None else step)
        png = render_png(heatmap, title=title, **self.plot_options)
        self.add_image(self.image_tag(heatmap.metric, heatmap.site), png, step)
        self.flush()
        return png

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(prefix={self.prefix!r}, scalars={self.scalars!r}, images={self.images!r})"
        )


# -- TensorBoard -------------------------------------------------------------------------------
class TensorBoardSink(Sink):
    """Log to TensorBoard through a ``SummaryWriter`` (``torch.utils.tensorboard`` or tensorboardX).

    >>> from torch.utils.tensorboard import SummaryWriter                  # doctest: +SKIP
    >>> sink = TensorBoardSink(SummaryWriter("runs/exp1"))                 # doctest: +SKIP
    >>> sink = TensorBoardSink(log_dir="runs/exp1")   # opened (and closed) by the sink  # doctest: +SKIP
    """

    kind = "tensorboard"

    def __init__(
        self, writer: Any = None, *, log_dir: str | os.PathLike[str] | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        if writer is not None and log_dir is not None:
            raise ConfigError("TensorBoardSink: pass writer= or log_dir=, not both.")
        if writer is not None and not (hasattr(writer, "add_scalar") and hasattr(writer, "add_image")):
            raise ConfigError(
                f"TensorBoardSink: {type(writer).__name__} is not a SummaryWriter (no add_scalar/add_image); "
                "pass torch.utils.tensorboard.SummaryWriter(...) or log_dir=."
            )
        if writer is None:
            _need("tensorboard", "tensorboard", "TensorBoardSink")  # torch's writer needs it too
        self._writer = writer
        self._owns = writer is None
        self.log_dir = str(log_dir) if log_dir is not None else None

    @property
    def writer(self) -> Any:
        if self._writer is None:
            _need("tensorboard", "tensorboard", "TensorBoardSink")
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir)
        return self._writer

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        w = self.writer
        for tag, v in values.items():
            w.add_scalar(tag, v, global_step=step)

    def add_image(self, tag: str, png: Path, step: int) -> None:
        self.writer.add_image(tag, _read_png(png), global_step=step, dataformats="HWC")

    def add_histogram(self, tag: str, hist: HistogramData, step: int) -> None:
        w = self.writer
        if not hasattr(w, "add_histogram_raw"):
            return
        w.add_histogram_raw(
            tag,
            min=hist.min,
            max=hist.max,
            num=hist.num,
            sum=hist.sum,
            sum_squares=hist.sum_squares,
            bucket_limits=hist.edges[1:].tolist(),  # each bucket's right edge; the first starts at min
            bucket_counts=hist.counts.tolist(),
            global_step=step,
        )

    def add_alert(self, message: str, step: int) -> None:
        self.writer.add_text(f"{self.prefix}/alerts", message, global_step=step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            if self._owns:
                self._writer.close()
                self._writer = None
            else:
                self._writer.flush()


# -- Weights & Biases --------------------------------------------------------------------------
class WandbSink(Sink):
    """Log to a Weights & Biases run (``wandb.init(...)``'s return value, or the active ``wandb.run``).

    layerscope's points are plotted against their own x axis, ``layerscope/step`` (the optimizer
    step), declared with ``define_metric``: they never move W&B's own step counter, so they mix
    with a trainer's logging in any order. Works in offline mode (``WANDB_MODE=offline``).
    """

    kind = "wandb"

    def __init__(self, run: Any = None, **options: Any) -> None:
        super().__init__(**options)
        self._wandb = _need("wandb", "wandb", "WandbSink")
        self._run = run
        self._defined = False

    @property
    def run(self) -> Any:
        run = self._run if self._run is not None else self._wandb.run
        if run is None:
            raise ConfigError(
                "WandbSink has no W&B run: call wandb.init(...) first (the HF/Lightning W&B integration "
                "does this) or pass run=wandb.init(...)."
            )
        if not self._defined:
            run.define_metric(f"{self.prefix}/step", hidden=True)
            run.define_metric(f"{self.prefix}/*", step_metric=f"{self.prefix}/step")
            self._defined = True
        return run

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, f"{self.prefix}/step": step})

    def add_image(self, tag: str, png: Path, step: int) -> None:
        self.run.log({tag: self._wandb.Image(str(png)), f"{self.prefix}/step": step})

    def add_histogram(self, tag: str, hist: HistogramData, step: int) -> None:
        h = self._wandb.Histogram(np_histogram=(hist.counts.tolist(), hist.edges.tolist()))
        self.run.log({tag: h, f"{self.prefix}/step": step})

    def add_alert(self, message: str, step: int) -> None:
        self.run.log({f"{self.prefix}/alert": message, f"{self.prefix}/step": step})
        alert = getattr(self.run, "alert", None)
        if callable(alert):
            alert(title="layerscope watch", text=message)


# -- MLflow ------------------------------------------------------------------------------------
class MLflowSink(Sink):
    """Log to an MLflow run: ``run_id`` (default: the active run), through ``client`` (default: a
    ``MlflowClient`` for ``tracking_uri``, e.g. ``"file:./mlruns"``). Scalars go in batches of 1000
    (MLflow's limit); heatmaps as images (``log_image``) with their step."""

    kind = "mlflow"
    _BATCH = 1000

    def __init__(
        self,
        run_id: str | None = None,
        *,
        tracking_uri: str | None = None,
        client: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._mlflow = _need("mlflow", "mlflow", "MLflowSink")
        if client is not None and tracking_uri is not None:
            raise ConfigError("MLflowSink: pass client= or tracking_uri=, not both.")
        self._client = client
        self.tracking_uri = tracking_uri
        self._run_id = run_id

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            active = self._mlflow.active_run()
            if active is None:
                raise ConfigError(
                    "MLflowSink has no MLflow run: call mlflow.start_run() first (the HF/Lightning MLflow "
                    "integration does this) or pass run_id=."
                )
            self._run_id = active.info.run_id
        return self._run_id

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = [Metric(k, v, ts, step) for k, v in values.items()]
        for i in range(0, len(metrics), self._BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + self._BATCH])

    def add_alert(self, message: str, step: int) -> None:
        self.client.log_text(self.run_id, message, f"{self.prefix}/alerts/step_{step:09d}.txt")

    def add_image(self, tag: str, png: Path, step: int) -> None:
        # MLflow keys allow '/', but image keys become file names: flatten them.
        key = tag.replace("/", ".")
        if hasattr(self.client, "log_image"):
            self.client.log_image(self.run_id, _read_png(png), key=key, step=step)
        else:  # MLflow < 2.12
            self.client.log_artifact(self.run_id, str(png), artifact_path=f"{self.prefix}/step_{step}")


# -- choosing sinks ----------------------------------------------------------------------------
def as_sink(target: Any) -> Sink:
    """A Sink for ``target``: a Sink; ``"tensorboard"`` / ``"wandb"`` / ``"mlflow"`` (default writer,
    active run); a ``SummaryWriter``; a wandb run; an MLflow ``ActiveRun``.

    >>> as_sink("nonsense")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    layerscope.errors.ConfigError: log_to='nonsense' is not a sink; pass 'tensorboard', 'wandb', 'mlflow', ...
    """
    if isinstance(target, Sink):
        return target
    if isinstance(target, str):
        name = target.strip().lower()
        if name == "tensorboard":
            return TensorBoardSink()
        if name == "wandb":
            return WandbSink()
        if name == "mlflow":
            return MLflowSink()
    else:
        if hasattr(target, "add_scalar") and hasattr(target, "add_image"):
            return TensorBoardSink(target)
        mod = type(target).__module__ or ""
        if mod.startswith("wandb"):
            return WandbSink(target)
        if mod.startswith("mlflow") and hasattr(target, "info"):
            return MLflowSink(target.info.run_id)
    raise ConfigError(
        f"log_to={target!r} is not a sink; pass 'tensorboard', 'wandb', 'mlflow', a SummaryWriter, "
        "a wandb run, an MLflow run or a layerscope.integrations.Sink."
    )


def as_sinks(targets: Any) -> list[Sink]:
    """``None``/``()`` -> []; one target or a list of them -> Sinks."""
    if targets is None:
        return []
    if isinstance(targets, (str, Sink)) or not isinstance(targets, (list, tuple)):
        targets = [targets]
    return [as_sink(t) for t in targets]


def _warn_sink(sink: Sink, e: Exception) -> None:
    warnings.warn(
        f"layerscope: logging to {sink.kind} failed ({type(e).__name__}: {e}); "
        "the run store is unaffected, training continues.",
        RuntimeWarning,
        stacklevel=3,
    )


# -- the live path: a store that also sends what it writes -------------------------------------
class SinkStore(Store):
    """A run :class:`~layerscope.store.Store` that also sends every step it writes to ``sinks``.

    Pass it to a ``Recorder`` as its store: scalars reach the sinks at the recorder's flushes
    (``flush_every``/``flush_secs``), on rank 0 only, from host copies the store write already made,
    so logging adds no device sync. A failing sink warns and never loses the store's data.
    :meth:`log_images` draws the run's heatmaps into the sinks (call it at the end of training).
    """

    def __init__(self, path: str | os.PathLike[str] | Store, sinks: Any = (), **store_options: Any) -> None:
        if isinstance(path, Store):
            path = path.path  # a second connection to the same file (SQLite WAL: safe)
        super().__init__(path, **store_options)
        self.sinks = as_sinks(sinks)
        self._failed: set[int] = set()

    def write_steps(self, run: str, records: Sequence[StepRecord]) -> None:
        super().write_steps(run, records)  # the store first: it is the record of truth
        edges = self._hist_edges(run) if any(r.hists for r in records) else None
        for sink in self.sinks:
            try:
                sink.log_records(records, edges)
            except Exception as e:  # noqa: BLE001 - a dashboard outage must not stop training
                self._sink_failed(sink, e)

    def _hist_edges(self, run: str) -> list[float] | None:
        cache = self.__dict__.setdefault("_edges", {})
        if run not in cache:
            cache[run] = self.run_config(run).get("hist_edges")
        return cache[run]

    def log_alerts(self, alerts: Sequence[Any]) -> None:
        """Send the watch's alerts (objects with ``message`` and ``step``) to every sink as text."""
        for sink in self.sinks:
            try:
                for a in alerts:
                    sink.add_alert(a.message, int(a.step))
                sink.flush()
            except Exception as e:  # noqa: BLE001 - a dashboard outage must not stop training
                self._sink_failed(sink, e)

    def _sink_failed(self, sink: Sink, e: Exception) -> None:
        if isinstance(e, ConfigError):
            raise e  # a usage error (no wandb run, package missing): say so, don't hide it
        if id(sink) not in self._failed:
            self._failed.add(id(sink))
            _warn_sink(sink, e)

    def log_images(self, run: str, step: int | None = None) -> list[Path]:
        """Draw every (metric, site) heatmap of ``run`` the sinks want and log it at ``step``
        (default: the run's last step). Returns the PNGs logged."""
        pngs: list[Path] = []
        if not self.sinks:
            return pngs
        pairs = [(m, s) for m, s in self.metrics(run)]
        for metric, site in pairs:
            wanting = [sk for sk in self.sinks if sk.wants_image(metric)]
            if not wanting:
                continue
            hm = self.load(run, metric, site)
            png = render_png(hm, **wanting[0].plot_options)
            at = int(hm.steps[-1] if step is None else step)
            for sink in wanting:
                try:
                    sink.add_image(sink.image_tag(metric, site), png, at)
                    sink.flush()
                except Exception as e:  # noqa: BLE001
                    self._sink_failed(sink, e)
            pngs.append(png)
        return pngs

    def close(self) -> None:
        """Close the sinks (those the store opened itself) and the store; safe to call twice."""
        for sink in getattr(self, "sinks", []):
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001
                _warn_sink(sink, e)
        self.sinks = []
        super().close()


# -- after the fact ------------------------------------------------------------------------------
def log_heatmap(
    heatmap: Heatmap, to: Any, step: int | None = None, *, scalars: bool = False, title: str | None = None
) -> Path:
    """Log ``heatmap`` as an image to ``to`` (a Sink, a SummaryWriter, a wandb run, ``"wandb"``, ...)
    at ``step`` (default: its last step); with ``scalars=True`` also its per-layer values of every step.

    >>> from torch.utils.tensorboard import SummaryWriter              # doctest: +SKIP
    >>> log_heatmap(layerscope.load("runs.db", metric="rms"), SummaryWriter("tb"))   # doctest: +SKIP
    """
    sink = as_sink(to)
    if scalars:
        sink.log_records(_heatmaps_to_records([heatmap]))
    png = sink.log_heatmap(heatmap, step, title=title)
    if not isinstance(to, Sink):
        sink.close()  # flushes a writer the caller passed, closes one it opened
    return png


def log_run(
    store: str | os.PathLike[str] | Store,
    run: str | None = None,
    to: Any = "tensorboard",
    *,
    metrics: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    images: bool = True,
) -> None:
    """Send a recorded run to ``to``: the per-layer scalars of every step, then (``images``) one
    heatmap per (metric, site). For runs recorded without a live sink.

    >>> log_run("runs.db", "baseline", to=SummaryWriter("tb"), metrics=["rms", "kurtosis"])  # doctest: +SKIP
    """
    sinks = as_sinks(to)
    st = store if isinstance(store, Store) else Store(store, readonly=True)
    try:
        run = st.resolve_run(run)
        pairs = [
            (m, s)
            for m, s in st.metrics(run)
            if (metrics is None or m in metrics) and (sites is None or s in sites)
        ]
        if not pairs:
            raise ConfigError(
                f"run {run!r} has no recorded (metric, site) among metrics={metrics!r}, sites={sites!r}; "
                f"recorded: {st.metrics(run)}."
            )
        hms = [st.load(run, m, s) for m, s in pairs]
        records = _heatmaps_to_records(hms)
        edges = st.run_config(run).get("hist_edges")
        if edges:
            attach_hists(st, run, records, sites)
        for sink in sinks:
            sink.log_records(records, edges)
            if images:
                for hm in hms:
                    if sink.wants_image(hm.metric):
                        sink.log_heatmap(hm)
    finally:
        if not isinstance(store, Store):
            st.close()
        for sink, target in zip(sinks, to if isinstance(to, (list, tuple)) else [to]):
            if not isinstance(target, Sink):
                sink.close()


def _heatmaps_to_records(hms: Sequence[Heatmap]) -> list[StepRecord]:
    by_step: dict[int, dict[tuple[str, str], list[float]]] = {}
    for hm in hms:
        for i, s in enumerate(hm.steps):
            row = [float(v) for v in hm.values[i]]
            if all(math.isnan(v) for v in row):
                continue
            by_step.setdefault(int(s), {})[(hm.metric, hm.site)] = row
    return [StepRecord(s, vals) for s, vals in sorted(by_step.items())]


__all__ = [
    "SINK_NAMES",
    "MLflowSink",
    "Sink",
    "SinkStore",
    "TensorBoardSink",
    "WandbSink",
    "as_sink",
    "as_sinks",
    "histogram_data",
    "log_heatmap",
    "log_run",
    "render_png",
]

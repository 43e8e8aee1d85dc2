"""``layerscope sweep --watch``: the watch's default rules over the checkpoints' values, in step
order, as a user runs it (subprocesses). A checkpoint folder where the last block's MLP weights
blow up from step 10 on: the alert comes at step 10, once, and is stored as an event; a sweep
continued, redone (--force) or run with 2 workers says and stores the same; --on-alert stop ends
the sweep there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerscope.store import Store
from layerscope.testing import tiny_gpt

KW = dict(n_layer=2, n_embd=32, n_head=4, block_size=16)
FACTORY = f"""
from layerscope.testing import tiny_gpt

def build():
    return tiny_gpt(**{KW!r})
"""
STEPS = list(range(1, 13))
BLOW_UP = 10


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("watch")
    ck = root / "ckpts"
    ck.mkdir()
    torch.manual_seed(0)
    model = tiny_gpt(seed=0, **KW)
    for step in STEPS:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.0 + 0.001 * torch.randn_like(p))  # a slow drift: no alert
            sd = {k: v.clone() for k, v in model.state_dict().items()}
            if step >= BLOW_UP:
                sd["h.1.mlp.c_proj.weight"] *= 300.0  # the residual stream of layer 2 jumps
        torch.save(sd, ck / f"step_{step}.pt")
    (root / "factory.py").write_text(FACTORY)
    torch.save(torch.randint(0, 256, (2, 16)), root / "probe.pt")
    return root


def sweep(cli, root: Path, store: Path, *extra: str):
    return cli(
        "sweep", str(root / "ckpts"), "--model", f"{root / 'factory.py'}:build", "--probe",
        str(root / "probe.pt"), "--store", str(store), "--run", "s", "--format", "json", *extra,
    )  # fmt: skip


def alert_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("layerscope watch: ")]


def events(store: Path) -> list[tuple[int, int | None, str]]:
    with Store(store, readonly=True) as st:
        return [(e.step, e.layer, e.metric) for e in st.events("s")]


def test_sweep_watch_alerts_once_in_step_order_and_stores_them(cli, folder, tmp_path) -> None:
    store = tmp_path / "runs.db"
    r = sweep(cli, folder, store, "--watch")
    assert r.returncode == 0, r.stderr
    lines = alert_lines(r.stderr)
    assert lines and all(f"step {BLOW_UP}: layer 2" in ln and "max_abs" in ln for ln in lines), r.stderr
    first = events(store)
    assert first == [(BLOW_UP, 2, "max_abs")] * len(lines)

    again = sweep(cli, folder, store, "--watch")  # every step already there: history from the store
    assert again.returncode == 0, again.stderr
    assert alert_lines(again.stderr) == [] and events(store) == first  # not said or stored twice

    forced = sweep(cli, folder, store, "--watch", "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(alert_lines(forced.stderr)) == len(lines) and events(store) == first  # replaced, not added


def test_sweep_watch_with_two_workers_sees_the_steps_in_order(cli, folder, tmp_path) -> None:
    store = tmp_path / "runs.db"
    r = sweep(cli, folder, store, "--watch", "--workers", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert events(store) and {s for s, _, _ in events(store)} == {BLOW_UP}, r.stderr
    with Store(store, readonly=True) as st:
        assert st.steps("s") == STEPS


def test_sweep_on_alert_stop_ends_the_sweep_at_the_alert(cli, folder, tmp_path) -> None:
    store = tmp_path / "runs.db"
    r = sweep(cli, folder, store, "--watch", "--on-alert", "stop")
    assert r.returncode == 1, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and f"stopped the sweep at step {BLOW_UP}" in err[0] and "--on-alert warn" in err[0]
    with Store(store, readonly=True) as st:
        assert st.steps("s") == [s for s in STEPS if s <= BLOW_UP]  # swept so far: kept
    assert {s for s, _, _ in events(store)} == {BLOW_UP}


def test_on_alert_stop_without_watch_is_one_line(cli, folder, tmp_path) -> None:
    store = tmp_path / "runs.db"
    r = sweep(cli, folder, store, "--on-alert", "stop")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "add --watch" in r.stderr, r.stderr
    assert not store.exists()
    r = sweep(cli, folder, store, "--watch", "--on-alert", "halt")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'halt'" in r.stderr, r.stderr

"""Checkpoints a sweep meets in the wild: a pickle built to run code when loaded, a file cut short
by a full disk or a killed save, an empty file, weights of another model (wrong shapes, missing
keys), bytes that are no checkpoint at all. Each gets one line naming the file and what to do; the
code in the pickle never runs; the good checkpoints beside them are recorded; exit code 1.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from tests.reliability._helpers import assert_whole, run_cli

from layerscope.cli.main import COMMANDS
from layerscope.store import Store
from layerscope.testing import tiny_gpt


def test_sweep_is_a_command() -> None:
    # The rest would fail too without it; this says why in one line (it used to skip the module).
    assert "sweep" in COMMANDS


class Evil:
    """Unpickling this calls exec(): it writes the marker file. A safe loader never lets it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    d = tmp_path_factory.mktemp("ckpts")
    ck = d / "ckpts"
    ck.mkdir()
    marker = d / "PWNED"
    good = tiny_gpt().state_dict()  # the model the sweep builds: --model layerscope.testing.model:tiny_gpt
    torch.save(good, ck / "step_100.pt")
    torch.save(good, ck / "step_900.pt")
    torch.save({"model": good, "evil": Evil(marker)}, ck / "step_200.pt")  # torch zip format
    with open(ck / "step_250.pt", "wb") as f:
        pickle.dump({"state_dict": Evil(marker)}, f)  # legacy raw pickle
    data = (ck / "step_100.pt").read_bytes()
    (ck / "step_300.pt").write_bytes(data[: len(data) // 2])  # a save cut short
    (ck / "step_350.pt").write_bytes(b"")  # a save that never started writing
    torch.save(tiny_gpt(n_embd=32, n_head=2).state_dict(), ck / "step_400.pt")  # wrong shapes
    torch.save(
        {k: v for k, v in good.items() if ".h.3." not in k and not k.startswith("h.3.")}, ck / "step_500.pt"
    )
    (ck / "step_600.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    torch.save([1, 2, 3], ck / "step_700.pt")  # not a state dict
    torch.save(torch.randint(0, 256, (2, 16)), d / "probe.pt")
    store = d / "runs.db"
    r = run_cli(
        "sweep",
        ck,
        "--model",
        "layerscope.testing.model:tiny_gpt",
        "--probe",
        d / "probe.pt",
        "--store",
        store,
        "--run",
        "sweep",
        timeout=300,
    )
    return store, marker, r


BAD = {
    # file: what its line must say (besides its name)
    "step_200.pt": ["refused", "global exec", "--trust-checkpoints"],  # names the global it refused
    "step_250.pt": ["--trust-checkpoints"],  # a plain pickle: trusting it is the way to read it
    "step_300.pt": ["truncated"],
    "step_350.pt": ["empty"],
    "step_400.pt": ["does not fit", "shape"],
    "step_500.pt": ["does not fit", "missing"],
    "step_600.safetensors": ["not a valid safetensors file"],
    "step_700.pt": ["not a state dict"],
}
_OWN_LINES = ("error: ", "warning: ", "sweep ")  # problems, notes, and the progress bar


def _messages(stderr: str) -> list[str]:
    """stderr's messages, a wrapped message's lines joined back (the wrap is tested apart)."""
    out: list[str] = []
    for ln in stderr.splitlines():
        if ln.startswith(_OWN_LINES) or not out:
            out.append(ln)
        else:
            out[-1] += ln
    return out


def test_pickled_code_never_runs(swept) -> None:
    _, marker, _ = swept
    assert not marker.exists(), "loading a checkpoint ran the code pickled in it"


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_checkpoint_is_a_message_naming_it(swept, name: str) -> None:
    _, _, r = swept
    msgs = [m for m in _messages(r.stderr) if m.startswith(f"error: {name}: ")]
    assert len(msgs) == 1, r.stderr[-4000:]
    for needle in BAD[name]:
        assert needle in msgs[0], (needle, msgs[0])
    assert "unexpected" not in msgs[0] and "Traceback" not in r.stderr


def test_each_problem_is_one_physical_line(swept) -> None:
    # A terminal, a log file or `grep error:` must get each message whole: no wrapping.
    _, _, r = swept
    stray = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(_OWN_LINES)]
    assert not stray, stray


def test_the_sweep_goes_on_and_says_it_failed(swept) -> None:
    store, _, r = swept
    assert r.returncode == 1, r.stderr[-3000:]
    with Store(store, readonly=True) as st:
        assert st.steps("sweep") == [100, 900]  # the good ones, whole
    assert_whole(store)
    assert f"{len(BAD)} checkpoints failed" in r.stdout, r.stdout

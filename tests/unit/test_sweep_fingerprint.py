"""The checkpoint fingerprint (flags checkpoints with identical weights) and the probe's train/eval
mode handling: cheap paths must not change what they report."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from layerscope.store import Store
from layerscope.sweep.load import FINGERPRINT_SAMPLES, fingerprint


def _sd() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "big.weight": torch.randn(256, 512, generator=g),  # 131072 values: sampled in runs
        "small.bias": torch.randn(7, generator=g),  # fewer values than the sample: all read
        "edge": torch.randn(FINGERPRINT_SAMPLES + 1, generator=g),  # just above the sample size
        "half": torch.randn(64, 96, generator=g).to(torch.bfloat16),  # no numpy dtype
        "empty": torch.zeros(0, 3),
        "steps": torch.tensor(12),
    }


def test_equal_contents_give_equal_fingerprints() -> None:
    a = _sd()
    b = {k: v.clone() for k, v in reversed(list(a.items()))}  # other objects, other order
    assert fingerprint(a) == fingerprint(b)


def test_a_training_update_of_any_one_tensor_changes_it() -> None:
    base = fingerprint(_sd())
    for k in ("big.weight", "small.bias", "edge", "half"):
        sd = _sd()
        sd[k] = sd[k] + (1e-3 * torch.ones_like(sd[k]))  # an update touches every value
        assert fingerprint(sd) != base, k


def test_names_shapes_and_dtypes_count() -> None:
    base = fingerprint(_sd())
    sd = _sd()
    sd["renamed"] = sd.pop("small.bias")
    assert fingerprint(sd) != base
    sd = _sd()
    sd["big.weight"] = sd["big.weight"].reshape(512, 256)
    assert fingerprint(sd) != base
    sd = _sd()
    sd["small.bias"] = sd["small.bias"].double()
    assert fingerprint(sd) != base


def test_views_and_non_contiguous_tensors_hash_their_values() -> None:
    """A tensor that is a slice of a larger buffer (an offset view, as mmapped files give) or a
    transpose hashes the values it holds, not its neighbours in the buffer."""
    buf = torch.randn(4, 256, 512, generator=torch.Generator().manual_seed(1))
    view = buf[2]  # storage offset 2 * 256 * 512
    assert fingerprint({"w": view}) == fingerprint({"w": view.clone()})
    t = buf[1].t()
    assert fingerprint({"w": t}) == fingerprint({"w": t.contiguous()})
    other = buf.clone()
    other[3] += 1.0  # the neighbour changes, the view does not
    assert fingerprint({"w": other[2]}) == fingerprint({"w": view})


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_probe_runs_in_eval_mode_and_restores_mixed_modes(tmp_path: Path) -> None:
    """The probe runs with every module in eval mode (dropout off: two probes agree) and leaves each
    module's mode as it was: a half-frozen model (some modules in eval) stays half-frozen."""
    import layerscope

    torch.manual_seed(0)
    net = _Net()
    net.train()
    net.b.eval()  # frozen by the user
    x = torch.randn(8, 4)
    seen: list[bool] = []
    net.a[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    with layerscope.Recorder(net, tmp_path / "r.db", run="r", layers=["a", "b"], probe=x) as rec:
        rec.record_probe(1)
        rec.record_probe(2)
    assert seen == [False, False]
    assert net.training and net.a.training and net.a[1].training and not net.b.training
    with Store(tmp_path / "r.db", readonly=True) as st:
        hm = st.load("r", "rms", "output")
    assert hm.values.shape == (2, 2)
    assert (hm.values[0] == hm.values[1]).all()  # no dropout in the probe

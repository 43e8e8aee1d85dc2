"""Checkpoint discovery: the step of every naming scheme, and a parser that cannot be made to crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.errors import CheckpointError, ConfigError, LayerscopeError, NotFoundError
from layerscope.sweep.discover import MAX_STEP_DIGITS, find_checkpoints, parse_step


@pytest.mark.parametrize(
    "name, step",
    [
        ("step_30000.pt", 30000),
        ("step-30000.pth", 30000),
        ("step30000", 30000),  # Pythia revision folders
        ("STEP_12.PT", 12),
        ("global_step30000", 30000),  # DeepSpeed
        ("iter_0030000", 30000),  # Megatron
        ("ckpt-30000.safetensors", 30000),
        ("ckpt_7.pt", 7),
        ("checkpoint-30000", 30000),  # Hugging Face Trainer
        ("checkpoint_5.bin", 5),
        ("model_30000.bin", 30000),
        ("epoch=3-step=30000.ckpt", 30000),  # Lightning: the step, not the epoch
        ("epoch=3-step=30000-v1.ckpt", 30000),
        ("step=40-iter=50.pt", 40),  # a step word beats an iteration word
        ("30000.pt", 30000),
        ("0.pt", 0),
        ("ckpt.pt", None),  # nanoGPT: the step is inside the file
        ("last.ckpt", None),
        ("model.safetensors", None),
        ("pytorch_model.bin", None),
        ("model-00001-of-00002.safetensors", None),  # a shard number is not a step
        ("pytorch_model-00003-of-00004.bin", None),
        ("restep_5.pt", None),  # 'step' glued to other letters is not the word
        ("step_.pt", None),
        ("step_" + "9" * (MAX_STEP_DIGITS + 1) + ".pt", None),  # does not fit the store's int64
        ("", None),
    ],
)
def test_parse_step_names(name: str, step: int | None) -> None:
    assert parse_step(name) == step


def test_parse_step_reads_only_the_last_component() -> None:
    assert parse_step("runs/model_7b/ckpt.pt") is None
    assert parse_step("runs/step_100/weights.pt") is None  # discovery, not parse_step, looks at folders
    assert parse_step(Path("a/step_5") / "step_6.pt") == 6


def test_parse_step_regex() -> None:
    assert parse_step("exp/run7/weights.pt", step_regex=r"run(\d+)/") == 7
    assert parse_step("e12-s99.pt", step_regex=r"e(\d+)-s(?P<step>\d+)") == 99  # the named group wins
    assert parse_step("weights.pt", step_regex=r"run(\d+)") is None
    assert parse_step("run-abc.pt", step_regex=r"run-(\w+)") is None  # captured text must be digits
    assert parse_step("step_5.pt", step_regex=r"epoch(\d+)") is None  # the regex replaces the name rules


@pytest.mark.parametrize("regex", [r"run\d+", "(", "[a-"])
def test_bad_step_regex_is_a_config_error(regex: str) -> None:
    with pytest.raises(ConfigError, match="--step-regex"):
        parse_step("run5.pt", step_regex=regex)


def test_parse_step_rejects_non_paths() -> None:
    with pytest.raises(ConfigError):
        parse_step(12)  # type: ignore[arg-type]


_KEYWORDS = ["step_", "step-", "step", "global_step", "iter_", "ckpt-", "checkpoint-", "model_", "step="]
_EXTS = ["", ".pt", ".pth", ".bin", ".safetensors", ".ckpt"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))),
    st.one_of(st.none(), st.text(max_size=12)),
)
def test_parse_step_never_raises_anything_but_layerscope_errors(name: str, regex: str | None) -> None:
    try:
        step = parse_step(name, step_regex=regex)
    except LayerscopeError:
        return
    assert step is None or (isinstance(step, int) and 0 <= step < 10**MAX_STEP_DIGITS)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(_KEYWORDS),
    st.integers(0, 10**MAX_STEP_DIGITS - 1),
    st.sampled_from(_EXTS),
    st.text(alphabet="abcxyz_-/", max_size=10),
)
def test_parse_step_finds_the_number_of_every_scheme(keyword: str, n: int, ext: str, folder: str) -> None:
    zeros = "00" if n % 3 == 0 else ""  # zero-padded numbers too (Megatron's iter_0030000)
    digits = (zeros + str(n))[-MAX_STEP_DIGITS:]
    assert parse_step(f"{folder}/{keyword}{digits}{ext}") == int(digits)


# -- find_checkpoints ----------------------------------------------------------------------------


def _touch(root: Path, *names: str) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_find_checkpoints_every_layout(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "step_100.pt",
        "ckpt-200.safetensors",
        "model_300.bin",
        "checkpoint-400/model.safetensors",
        "checkpoint-400/optimizer.pt",
        "checkpoint-400/config.json",
        "checkpoint-500/model.safetensors.index.json",
        "checkpoint-500/model-00001-of-00002.safetensors",
        "checkpoint-500/model-00002-of-00002.safetensors",
        "checkpoint-600/pytorch_model.bin",
        "checkpoint-600/rng_state.pth",
        "lightning_logs/version_0/checkpoints/epoch=0-step=700.ckpt",
        "sub/step_800/weights.pt",  # the step from the folder above the file
        "optimizer.pt",
        "scheduler.pt",
        "training_args.bin",
        ".hidden_step_5.pt",
        "notes.txt",
    )
    d = find_checkpoints(tmp_path)
    assert d.problems == []
    got = [(c.step, c.name) for c in d.checkpoints]
    assert got == [
        (100, "step_100.pt"),
        (200, "ckpt-200.safetensors"),
        (300, "model_300.bin"),
        (400, "checkpoint-400"),
        (500, "checkpoint-500"),
        (600, "checkpoint-600"),
        (700, "lightning_logs/version_0/checkpoints/epoch=0-step=700.ckpt"),
        (800, "sub/step_800/weights.pt"),
    ]
    by_step = {c.step: c for c in d.checkpoints}
    assert by_step[400].weights.name == "model.safetensors"
    assert by_step[500].weights.name == "model.safetensors.index.json"
    assert by_step[600].weights.name == "pytorch_model.bin"
    assert by_step[400].config_json == tmp_path / "checkpoint-400" / "config.json"
    assert by_step[100].config_json is None


def test_step_inside_the_file_and_trainer_state(tmp_path: Path) -> None:
    _touch(tmp_path, "out/ckpt.pt", "last.ckpt", "final/model.safetensors")
    (tmp_path / "final" / "trainer_state.json").write_text(json.dumps({"global_step": 900}))
    seen = []

    def content_step(p: Path) -> int | None:
        seen.append(p.name)
        return {"ckpt.pt": 1000, "last.ckpt": 1100}[p.name]

    d = find_checkpoints(tmp_path, content_step=content_step)
    assert [(c.step, c.step_from) for c in d.checkpoints] == [
        (900, "trainer_state"),
        (1000, "content"),
        (1100, "content"),
    ]
    assert sorted(seen) == ["ckpt.pt", "last.ckpt"]  # files with a step in their name are not opened


def test_problems_are_one_line_each_and_the_rest_is_kept(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "step_1.pt",
        "step_1.safetensors",
        "weights.pt",
        "model-00001-of-00003.safetensors",
        "evil.pt",
        "step_2.pt",
    )

    def content_step(p: Path) -> int | None:
        if p.name == "evil.pt":
            raise CheckpointError("evil.pt: refused to load")
        return None

    d = find_checkpoints(tmp_path, content_step=content_step)
    assert [(c.step, c.name) for c in d.checkpoints] == [(1, "step_1.safetensors"), (2, "step_2.pt")]
    msgs = sorted(p.message for p in d.problems)
    assert len(msgs) == 4 and all("\n" not in m for m in msgs)
    assert any(
        m.startswith("step_1.pt: step 1 is also step_1.safetensors") for m in msgs
    )  # safetensors preferred
    assert any(m.startswith("weights.pt: no step") and "--step-regex" in m for m in msgs)
    assert any(m.startswith("model-00001-of-00003.safetensors: one shard") for m in msgs)
    assert "evil.pt: refused to load" in msgs


def test_step_regex_applies_to_the_relative_path(tmp_path: Path) -> None:
    _touch(tmp_path, "run/e3/weights.pt", "run/e10/weights.pt", "run/e10/step_99.pt")
    d = find_checkpoints(tmp_path, step_regex=r"e(\d+)/weights")
    assert [(c.step, c.name, c.step_from) for c in d.checkpoints] == [
        (3, "run/e3/weights.pt", "regex"),
        (10, "run/e10/weights.pt", "regex"),
    ]
    assert [p.path.name for p in d.problems] == ["step_99.pt"]


def test_root_can_be_one_hf_folder_or_one_file(tmp_path: Path) -> None:
    _touch(tmp_path, "checkpoint-70/model.safetensors", "step_5.pt")
    one = find_checkpoints(tmp_path / "checkpoint-70")
    assert [(c.step, c.name) for c in one.checkpoints] == [(70, "checkpoint-70")]
    f = find_checkpoints(tmp_path / "step_5.pt")
    assert [(c.step, c.name) for c in f.checkpoints] == [(5, "step_5.pt")]


def test_trainer_output_folder_with_final_weights_on_top(tmp_path: Path) -> None:
    """Trainer's output_dir: checkpoint-N/ folders, and the final model saved beside them."""
    _touch(
        tmp_path,
        "checkpoint-10/model.safetensors",
        "checkpoint-20/model.safetensors",
        "model.safetensors",
        "config.json",
        "training_args.bin",
    )
    d = find_checkpoints(tmp_path)
    assert [c.name for c in d.checkpoints] == ["checkpoint-10", "checkpoint-20"] and d.problems == []
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 25}))
    d = find_checkpoints(tmp_path)
    assert [(c.step, c.name) for c in d.checkpoints][-1] == (25, tmp_path.name) and d.problems == []
    (tmp_path / "trainer_state.json").unlink()
    for sub in ("checkpoint-10", "checkpoint-20"):
        for f in (tmp_path / sub).iterdir():
            f.unlink()
        (tmp_path / sub).rmdir()
    d = find_checkpoints(tmp_path)  # the final weights alone, and no step for them: said so
    assert d.checkpoints == [] and len(d.problems) == 1 and "trainer_state.json" in d.problems[0].message


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        find_checkpoints(tmp_path / "nope")

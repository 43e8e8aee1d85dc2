"""A deterministic training corpus with structure to learn, generated, never downloaded.

Three sources interleaved line by line, so a model has easy and hard things to learn and its
activations change visibly over training:

- a probabilistic grammar of English-like sentences (agreement, fixed word order),
- arithmetic strings whose answers are right (``37+45=82``),
- a Markov source over a small alphabet with a few strongly preferred transitions.
"""

from __future__ import annotations

import random

import torch

_DET = ["the", "a", "every", "one", "no"]
_ADJ = ["small", "quiet", "bright", "old", "green", "heavy", "quick", "lazy", "red", "cold"]
_NOUN_SG = ["cat", "dog", "bird", "child", "robot", "river", "engine", "teacher", "garden", "model"]
_VERB_SG = ["sees", "likes", "follows", "finds", "builds", "watches", "moves", "helps"]
_ADV = ["slowly", "today", "again", "quietly", "at night", "every day"]
_PREP = ["near", "under", "behind", "with", "beside"]


def _np(rng: random.Random) -> str:
    words = [rng.choice(_DET)]
    if rng.random() < 0.5:
        words.append(rng.choice(_ADJ))
    words.append(rng.choice(_NOUN_SG))
    if rng.random() < 0.25:
        words += [rng.choice(_PREP), rng.choice(_DET), rng.choice(_NOUN_SG)]
    return " ".join(words)


def _sentence(rng: random.Random) -> str:
    s = f"{_np(rng)} {rng.choice(_VERB_SG)} {_np(rng)}"
    if rng.random() < 0.4:
        s += " " + rng.choice(_ADV)
    return s[0].upper() + s[1:] + "."


def _arith(rng: random.Random) -> str:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    if rng.random() < 0.5:
        return f"{a}+{b}={a + b}"
    a, b = max(a, b), min(a, b)
    return f"{a}-{b}={a - b}"


_MARKOV_STATES = "abcdefgh"


def _markov(rng: random.Random, length: int = 24) -> str:
    # Each state prefers one successor (p=0.7), the rest share 0.3: a learnable transition table.
    out = [rng.choice(_MARKOV_STATES)]
    for _ in range(length - 1):
        i = _MARKOV_STATES.index(out[-1])
        nxt = _MARKOV_STATES[(i * 3 + 1) % 8] if rng.random() < 0.7 else rng.choice(_MARKOV_STATES)
        out.append(nxt)
    return "".join(out)


def generate_text(n_chars: int = 200_000, seed: int = 0) -> str:
    """About ``n_chars`` characters of corpus; the same text for the same seed, on any machine."""
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    while total < n_chars:
        r = rng.random()
        line = _sentence(rng) if r < 0.5 else (_arith(rng) if r < 0.8 else _markov(rng))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:n_chars]


def encode(text: str) -> torch.Tensor:
    """Bytes tokenizer: UTF-8 bytes as int64 token ids (vocab 256)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


class Corpus:
    """Token stream with deterministic batch sampling.

    >>> c = Corpus(n_chars=5000, seed=0)
    >>> x, y = c.batch(4, 16, step=0)
    >>> tuple(x.shape), bool((x[:, 1:] == y[:, :-1]).all())
    ((4, 16), True)
    """

    def __init__(self, n_chars: int = 200_000, seed: int = 0) -> None:
        self.text = generate_text(n_chars, seed)
        self.data = encode(self.text)
        self.seed = seed

    def batch(self, batch_size: int, block_size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets ``(B, T)`` for training step ``step`` (reproducible)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        ix = torch.randint(len(self.data) - block_size - 1, (batch_size,), generator=g)
        x = torch.stack([self.data[i : i + block_size] for i in ix.tolist()])
        y = torch.stack([self.data[i + 1 : i + 1 + block_size] for i in ix.tolist()])
        return x, y

    def probe(self, batch_size: int = 8, block_size: int = 64) -> torch.Tensor:
        """A fixed probe batch (the same for every step and every run of this corpus)."""
        return self.batch(batch_size, block_size, step=-1)[0]

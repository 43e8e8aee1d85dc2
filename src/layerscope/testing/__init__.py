"""The tiny 12-layer GPT and the generated corpus that the demo, the tests and the benchmarks share."""

from .corpus import Corpus, encode, generate_text
from .model import GPTConfig, TinyGPT, tiny_gpt
from .train import TrainConfig, train
from .widths import tiny_gpt_mup, tiny_gpt_sp

__all__ = [
    "Corpus",
    "GPTConfig",
    "TinyGPT",
    "TrainConfig",
    "encode",
    "generate_text",
    "tiny_gpt",
    "tiny_gpt_mup",
    "tiny_gpt_sp",
    "train",
]

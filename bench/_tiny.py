"""Shared set-up for the benchmarks: a small PersonaBench and a tiny model, built locally in a temp dir."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_setup() -> tuple[Path, Path]:
    from personadual.data.personabench import BenchConfig, write
    from personadual.models.tiny import TinyModelConfig, init_tiny

    root = Path(tempfile.mkdtemp(prefix="pd-bench-"))
    write(BenchConfig(train_bases=100, eval_bases={"val": 20, "test": 5}, personalized={"train": 100, "val": 40, "test": 5}),
          root / "data")
    init_tiny(root / "data", root / "model", TinyModelConfig())
    return root / "data", root / "model"


def real_vocab_setup(untied: bool = False) -> tuple[Path, Path]:
    """A small PersonaBench and a random-init Qwen3 (2 layers, width 64) on the genuine Qwen3 tokenizer, its
    151,936-row table, with the mode markers registered as SFT registers them (rows at the mean row)."""
    from personadual import modes
    from personadual.training import save_final
    from personadual.data.personabench import BenchConfig, write
    from personadual.models.real_vocab import RealVocabConfig, build
    from personadual.training import register_markers

    root = Path(tempfile.mkdtemp(prefix="pd-bench-real-"))
    write(BenchConfig(train_bases=100, eval_bases={"val": 20, "test": 5}, personalized={"train": 100, "val": 40, "test": 5}),
          root / "data")
    model, tok = build(RealVocabConfig(untied=untied))
    register_markers(model, tok, modes.DEFAULT_MODES)
    save_final(model, tok, root / "model")
    return root / "data", root / "model"

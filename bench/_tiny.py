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

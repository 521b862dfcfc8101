"""Shared fixtures: a small PersonaBench and a tiny model, built locally (never from a hub)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from personadual.data.personabench import BenchConfig, write  # noqa: E402

SMALL = dict(train_bases=60, eval_bases={"val": 6, "test": 6}, personalized={"train": 60, "val": 8, "test": 8})


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    write(BenchConfig(seed=0, **SMALL), out)
    return out


@pytest.fixture(scope="session")
def tiny_dir(bench_dir, tmp_path_factory):
    from personadual.models.tiny import TinyModelConfig, init_tiny

    out = tmp_path_factory.mktemp("tiny")
    init_tiny(bench_dir, out, TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                               intermediate_size=128, vocab_size=600))
    return out

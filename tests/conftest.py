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


def sft_overrides(model, data, out, **extra):
    """Overrides for a seconds-long SFT run of the tiny test model."""
    kw = dict(model=model, data=data, output_dir=out, learning_rate=3e-3, max_steps=40, per_device_train_batch_size=16,
              max_length=256, save_steps=1000, logging_steps=10, eval_limit=0, threads=1, warmup_steps=0.0)
    kw.update(extra)
    return [f"{k}={v}" for k, v in kw.items()]


@pytest.fixture(scope="session")
def sft_model(bench_dir, tiny_dir, tmp_path_factory):
    """The tiny model after a brief dual SFT: it opens every response with a marker."""
    from personadual.config import load_config
    from personadual.sft.config import SFTRunConfig
    from personadual.sft.train import main

    out = tmp_path_factory.mktemp("sft")
    main(load_config(SFTRunConfig, None, sft_overrides(tiny_dir, bench_dir, out, max_steps=60)))
    return out / "model"

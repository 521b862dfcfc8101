"""The demo end to end at toy size: every stage runs, the summary has the promised shape, and a rerun
skips every finished stage."""

import json

from personadual.demo import run_demo

TOY = {
    "data": ["train_bases=30", "eval_bases={val: 2, test: 3}", "personalized={train: 30, val: 4, test: 6}"],
    "tiny": ["hidden_size=32", "num_layers=1", "num_heads=2", "num_kv_heads=1", "intermediate_size=64", "vocab_size=500"],
    "base": ["max_steps=4", "per_device_train_batch_size=8", "save_steps=1000"],
    "sft": ["max_steps=4", "per_device_train_batch_size=8", "save_steps=1000"],
    "rl": ["max_steps=1", "num_generations=4", "per_device_train_batch_size=8", "max_completion_length=16", "save_steps=1000"],
    "eval": ["--max-new-tokens", "24"],
}
MODELS = ["sft_dual", "sft_general_only", "sft_personalized_only", "sft_persona_prompted", "rl_dual", "rl_dual_paper", "rl_grpo"]


def test_demo_runs_every_stage_then_resumes(tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(out, seed=0, overrides=TOY)
    for name in MODELS:
        entry = summary[name]
        assert set(entry) >= {"acc", "personalized_acc", "hacc", "format_error_rate"}
        assert set(entry["acc"]) >= {"none", "irrelevant", "misaligned", "helpful"}
    assert set(summary["stage_seconds"]) == {"data", "tiny_model", "base_model", "sft", "rl", "eval", "report"}
    assert json.loads((out / "summary.json").read_text()) == summary
    report = (out / "report.md").read_text()
    assert "## The paper's claims, checked" in report and report.count("PASS") + report.count("FAIL") == 7
    assert (out / "report" / "accuracy_by_condition.png").exists()

    before = {p: p.stat().st_mtime for p in out.glob("*/model/model.safetensors")}
    again = run_demo(out, seed=0, overrides=TOY)  # everything is complete: nothing retrains
    assert {p: p.stat().st_mtime for p in out.glob("*/model/model.safetensors")} == before
    assert again["stage_seconds"] == summary["stage_seconds"]

    # issue 4's side-by-side over RL seeds: seed 1 reruns each seed-0 RL config, then val and test evals
    from personadual.rl_compare import rl_compare

    result = rl_compare(out, seeds=(0, 1), eval_args=tuple(TOY["eval"]))
    assert set(result) == {"val", "test"}
    assert set(result["val"]) == {"sft_dual", "rl_dual", "rl_dual_paper", "rl_grpo"}
    assert set(result["test"]["rl_grpo"]) == {0, 1} and set(result["test"]["sft_dual"]) == {0}
    assert len(list((out / "logs").glob("eval_val_sft_dual_*.log"))) == 1  # the start is evaluated once, not per seed
    import yaml

    cfg = yaml.safe_load((out / "seeds" / "rl_dual_s1" / "config.yaml").read_text())
    assert cfg["seed"] == 1 and cfg["max_steps"] == 1 and cfg["estimator"] == "dual"  # the seed-0 run's settings
    md = (out / "rl_compare.md").read_text()
    assert "## val" in md and "## test" in md and "rl_dual's balanced accuracy: above sft_dual in" in md
    stamp = (out / "seeds" / "rl_dual_s1" / "model" / "model.safetensors").stat().st_mtime
    rl_compare(out, seeds=(0, 1), eval_args=tuple(TOY["eval"]))  # complete: nothing retrains
    assert (out / "seeds" / "rl_dual_s1" / "model" / "model.safetensors").stat().st_mtime == stamp


def test_demo_full_settings_layer_under_explicit_overrides():
    from personadual.demo import FULL_OVERRIDES, merge_overrides

    merged = merge_overrides(FULL_OVERRIDES, {"rl": ["max_steps=2"], "sft": ["max_steps=3"]})
    assert merged["rl"][-1] == "max_steps=2" and "max_steps=100" in merged["rl"] and merged["sft"] == ["max_steps=3"]
    assert merge_overrides({}, {}) == {}

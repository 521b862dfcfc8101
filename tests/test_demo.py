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


def test_demo_full_settings_layer_under_explicit_overrides():
    from personadual.demo import FULL_OVERRIDES, merge_overrides

    merged = merge_overrides(FULL_OVERRIDES, {"rl": ["max_steps=2"], "sft": ["max_steps=3"]})
    assert merged["rl"][-1] == "max_steps=2" and "max_steps=100" in merged["rl"] and merged["sft"] == ["max_steps=3"]
    assert merge_overrides({}, {}) == {}

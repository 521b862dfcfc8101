"""The demo end to end at toy size: every stage runs, the summary has the promised shape, and a rerun
skips every finished stage."""

import json

import pytest

from personadual.experiments.demo import run_demo
from personadual.eval.verdicts import DEGENERATE_BELOW

TOY = {
    "data": ["train_bases=30", "eval_bases={val: 2, test: 3}", "personalized={train: 30, val: 4, test: 6}", "rl_bases=5",
             "rl_personalized=5"],
    "tiny": ["hidden_size=32", "num_layers=1", "num_heads=2", "num_kv_heads=1", "intermediate_size=64", "vocab_size=500"],
    "base": ["max_steps=4", "per_device_train_batch_size=8", "save_steps=1000"],
    "sft": ["max_steps=4", "per_device_train_batch_size=8", "save_steps=1000"],
    "rl": ["max_steps=1", "num_generations=4", "per_device_train_batch_size=8", "max_completion_length=16", "save_steps=1000"],
    "eval": ["--max-new-tokens", "24"],
}
MODELS = ["sft_dual", "sft_general_only", "sft_personalized_only", "sft_persona_prompted", "rl_dual", "rl_grpo"]


@pytest.mark.slow
def test_demo_runs_every_stage_then_resumes(tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(out, seed=0, overrides=TOY)
    for name in MODELS:
        entry = summary[name]
        assert set(entry) >= {"acc", "personalized_acc", "hacc", "format_error_rate"}
        assert set(entry["acc"]) >= {"none", "irrelevant", "misaligned", "helpful"}
    base = json.loads((out / "eval" / "base_plain" / "metrics.json").read_text())  # the base-model baseline
    assert base["protocol"] == "plain" and summary["base_plain"]["hacc"] is None and "unreadable" in base
    assert "| base_plain | plain |" in (out / "report" / "comparison.md").read_text()
    assert set(summary["stage_seconds"]) == {"data", "tiny_model", "base_model", "sft", "check", "rl", "eval", "report"}
    env = summary["environment"]  # what two reports of the same code can differ by
    import torch

    assert env["seed"] == 0 and env["torch"] == torch.__version__ and env["cpu_capability"]
    assert f"CPU kernels {env['cpu_capability']}" in (out / "report.md").read_text().split("\n")[2]
    # the val checks of the RL start and of what RL made of it; a 4-step toy model's modes never disagree
    assert set(summary["stage_checks"]) == {"sft_dual", "rl_dual", "rl_grpo"}  # dual_paper: demo-full only
    assert "rl_dual_paper" not in summary and not (out / "rl_dual_paper").exists()
    for name, check in summary["stage_checks"].items():
        assert check["degenerate"] == (check["decisive_share"] < DEGENERATE_BELOW)
        assert (f"**{name} is DEGENERATE" in (out / "report.md").read_text()) == check["degenerate"]
        assert (f"**{name} MISREADS" in (out / "report.md").read_text()) == check["misreads_helpful"]
        assert (f"**{name} MISPLACES" in (out / "report.md").read_text()) == check["misplaces_personalized"]
    assert json.loads((out / "summary.json").read_text()) == summary
    report = (out / "report.md").read_text()
    assert "## The paper's claims, checked" in report and report.count("PASS") + report.count("FAIL") == 5
    assert "## Measured beside the claims" in report and "decisive items" in report
    assert (out / "report" / "accuracy_by_condition.png").exists()

    before = {p: p.stat().st_mtime for p in out.glob("*/model/model.safetensors")}
    again = run_demo(out, seed=0, overrides=TOY)  # everything is complete: nothing retrains
    assert {p: p.stat().st_mtime for p in out.glob("*/model/model.safetensors")} == before
    assert again["stage_seconds"] == summary["stage_seconds"]

    # the side-by-side over RL seeds: seed 1 reruns each seed-0 RL config, then val and test evals
    from personadual.experiments.rl_compare import rl_compare

    result = rl_compare(out, seeds=(0, 1), eval_args=tuple(TOY["eval"]))
    assert set(result) == {"val", "test"}
    assert set(result["val"]) == {"sft_dual", "rl_dual", "rl_grpo"}
    assert set(result["test"]["rl_grpo"]) == {0, 1} and set(result["test"]["sft_dual"]) == {0}
    # the start's val evaluation is the demo's own stage check: reused, never redone per seed
    assert not list((out / "logs").glob("eval_val_sft_dual_*.log")) and (out / "eval_val" / "sft_dual" / "metrics.json").exists()
    import yaml

    cfg = yaml.safe_load((out / "seeds" / "rl_dual_s1" / "config.yaml").read_text())
    assert cfg["seed"] == 1 and cfg["max_steps"] == 1 and cfg["estimator"]["name"] == "dual"  # the seed-0 run's settings
    md = (out / "rl_compare.md").read_text()
    assert "## val" in md and "## test" in md and "rl_dual's balanced accuracy: above sft_dual in" in md
    stamp = (out / "seeds" / "rl_dual_s1" / "model" / "model.safetensors").stat().st_mtime
    rl_compare(out, seeds=(0, 1), eval_args=tuple(TOY["eval"]))  # complete: nothing retrains
    assert (out / "seeds" / "rl_dual_s1" / "model" / "model.safetensors").stat().st_mtime == stamp

    # a sweep: one estimator, a changed setting, its own folder; the demo's models are not touched
    demo_model = (out / "rl_dual" / "model" / "model.safetensors").stat().st_mtime
    sweep = rl_compare(out, seeds=(0,), eval_args=tuple(TOY["eval"]), overrides=("temperature=0.5",), tag="t05",
                       estimators=("dual",))
    assert set(sweep["test"]) == {"sft_dual", "rl_dual"}
    cfg = yaml.safe_load((out / "sweeps" / "t05" / "rl_dual_s0" / "config.yaml").read_text())
    assert cfg["temperature"] == 0.5 and cfg["seed"] == 0 and cfg["max_steps"] == 1
    assert (out / "rl_dual" / "model" / "model.safetensors").stat().st_mtime == demo_model
    md = (out / "sweeps" / "t05" / "rl_compare.md").read_text()
    assert "`temperature=0.5`" in md and "rl_dual_paper" not in md


def _finished_demo_stub(out):
    """What rl-compare checks before it trains anything: finished models (COMPLETE) and the RL configs."""
    from personadual.config import load_config, save_config
    from personadual.rl.config import RLRunConfig
    from personadual.training import COMPLETE

    for name in ("sft_dual", "rl_dual", "rl_dual_paper", "rl_grpo"):
        (out / name / "model").mkdir(parents=True)
        (out / name / "model" / COMPLETE).write_text("final\n")
    for e in ("dual", "dual_paper", "grpo"):
        cfg = load_config(RLRunConfig, None, ["model=m", "data=d", f"output_dir={out / f'rl_{e}'}", f"estimator.name={e}"])
        save_config(cfg, out / f"rl_{e}" / "config.yaml")


def test_rl_compare_refuses_bad_sweeps_before_training_anything(tmp_path):
    """The error paths need no trained model: each is refused up front and leaves no folder behind."""
    import pytest

    from personadual.config import ConfigError
    from personadual.experiments.rl_compare import rl_compare

    out = tmp_path / "demo"
    with pytest.raises(FileNotFoundError, match="not a finished model; run `personadual demo"):
        rl_compare(out)
    _finished_demo_stub(out)
    with pytest.raises(ValueError, match="--tag"):
        rl_compare(out, overrides=("temperature=0.5",))
    with pytest.raises(ConfigError, match="temprature"):
        rl_compare(out, overrides=("temprature=0.5",), tag="typo")
    (out / "sweeps" / "t05").mkdir(parents=True)
    (out / "sweeps" / "t05" / "overrides.json").write_text('["temperature=0.5"]\n')
    with pytest.raises(ValueError, match="choose another --tag"):
        rl_compare(out, overrides=("temperature=0.9",), tag="t05", estimators=("dual",))
    with pytest.raises(ValueError, match="choose from"):
        rl_compare(out, tag="x", estimators=("ppo",))
    with pytest.raises(ValueError, match="plain folder name"):
        rl_compare(out, overrides=("temperature=0.5",), tag="../up")
    assert not (out / "sweeps" / "typo").exists() and not (out / "sweeps" / "x").exists()
    assert not (out / "seeds").exists() and not (out / "logs").exists()  # nothing was trained


def test_demo_full_settings_layer_under_explicit_overrides():
    from personadual.experiments.demo import FULL_OVERRIDES, merge_overrides

    merged = merge_overrides(FULL_OVERRIDES, {"rl": ["max_steps=2"], "sft": ["max_steps=3"]})
    assert merged["rl"][-1] == "max_steps=2" and "max_steps=300" in merged["rl"] and merged["sft"] == ["max_steps=3"]
    assert merge_overrides({}, {}) == {}


def test_rl_compare_cli_passes_the_sweep_and_reports_bad_flags(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import personadual.experiments.rl_compare as rc
    from personadual.cli import app

    seen = {}

    def fake(out, seeds, jobs, overrides=(), tag=None, estimators=()):
        seen.update(seeds=seeds, overrides=overrides, tag=tag, estimators=estimators)
        (out / "sweeps" / tag).mkdir(parents=True)
        (out / "sweeps" / tag / "rl_compare.md").write_text("# sweep\n")

    monkeypatch.setattr(rc, "rl_compare", fake)
    args = ["rl-compare", "--out", str(tmp_path), "--seeds", "0,1", "--set", "temperature=0.5", "--set", "estimator.alpha=16",
            "--tag", "t05", "--estimators", "dual,grpo"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert seen == {"seeds": (0, 1), "overrides": ("temperature=0.5", "estimator.alpha=16"), "tag": "t05", "estimators": ("dual", "grpo")}
    assert "# sweep" in r.output
    r = CliRunner().invoke(app, ["rl-compare", "--out", str(tmp_path), "--set", "temperature", "--tag", "t"])
    assert r.exit_code == 2 and "--set 'temperature': expected key=value" in r.output


def test_stage_clock_keeps_the_time_a_crashed_stage_ran(tmp_path):
    import time

    import pytest

    from personadual.experiments.jobs import StageClock

    clock = StageClock(tmp_path, beat=0.02)

    def crash():
        time.sleep(0.15)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        clock.run("sft", crash)
    partial = json.loads((tmp_path / "stage_seconds.partial.json").read_text())
    assert partial["sft"] >= 0.1 and not (tmp_path / "stage_seconds.json").exists()

    resumed = StageClock(tmp_path, beat=0.02)  # a new process after the crash
    assert resumed.run("sft", lambda: time.sleep(0.05) or True)
    times = json.loads((tmp_path / "stage_seconds.json").read_text())
    assert times["sft"] >= 0.15  # both runs counted
    assert not (tmp_path / "stage_seconds.partial.json").exists()  # nothing in flight any more
    assert not resumed.run("data", lambda: False) and "data" not in resumed.times  # skipped: no time recorded


def test_stage_clock_saves_while_the_stage_runs(tmp_path):
    """kill -9 runs no handler: the heartbeat's last save is what survives."""
    import time

    from personadual.experiments.jobs import StageClock

    clock, seen = StageClock(tmp_path, beat=0.02), []

    def stage():
        time.sleep(0.1)
        seen.append(json.loads((tmp_path / "stage_seconds.partial.json").read_text()))
        return True

    clock.run("rl", stage)
    assert seen and seen[0]["rl"] > 0


def test_separation_flags_a_dual_model_whose_modes_never_disagree():
    from personadual.eval.metrics import separation
    from personadual.eval.predictions import Prediction
    from personadual.eval.verdicts import is_degenerate
    from personadual.experiments.demo_report import stage_check_lines

    def pred(i, cond, mode, answer, gold="A"):
        return Prediction(id=f"q{i}-{cond}", base_id=f"q{i}", family="f", kind="objective", condition=cond, gold=gold,
                          preferred_mode="general", requested_mode=mode, mode=mode, answer=answer,
                          correct=answer == gold, well_formed=True, reason="", p_mode={}, text="")

    conds = ["misaligned", "helpful"] * 50
    same = {m: [pred(i, c, m, "A" if i % 3 else "B") for i, c in enumerate(conds)] for m in ("general", "personalized")}
    sep = separation(same)  # one model twice: every forced answer is the same in both modes
    assert sep["decisive"] == 0 and sep["answers_differ"] == {"helpful": 0.0, "misaligned": 0.0} and is_degenerate(sep)
    line = stage_check_lines({"sft_dual": {**sep, "degenerate": True}})[0]
    assert "sft_dual is DEGENERATE" in line and "0 of 100 val items" in line
    apart = {"general": same["general"],
             "personalized": [pred(i, c, "personalized", "C" if c == "misaligned" else "A") for i, c in enumerate(conds)]}
    sep = separation(apart)  # the personalized mode follows the misaligned persona (C), the general mode solves
    assert sep["answers_differ"]["misaligned"] == 1.0 and sep["decisive"] == 33 + 17 and not is_degenerate(sep)
    assert "modes separated on val" in stage_check_lines({"sft_dual": {**sep, "degenerate": False}})[0]
    # a model with a handful of decisive items is collapsed too (11 of 536: 2%); a separated one has a quarter or more
    assert is_degenerate({"decisive_share": 11 / 536}) and not is_degenerate({"decisive_share": 146 / 536})


def test_a_personalized_mode_that_misreads_helpful_personas_is_named():
    from personadual.experiments.demo_report import stage_check_lines
    from personadual.eval.verdicts import misreads_helpful_personas

    assert misreads_helpful_personas(0.56) and not misreads_helpful_personas(0.98) and not misreads_helpful_personas(None)
    check = {"decisive": 239, "n": 536, "decisive_share": 0.446, "answers_differ": {"misaligned": 0.9}, "degenerate": False}
    lines = stage_check_lines({"sft_dual": {**check, "personalized_on_helpful": 0.56, "misreads_helpful": True}})
    assert len(lines) == 2 and "sft_dual MISREADS helpful personas" in lines[1] and "right on 56%" in lines[1]
    lines = stage_check_lines({"sft_dual": {**check, "personalized_on_helpful": 0.98, "misreads_helpful": False}})
    assert len(lines) == 1 and "MISREADS" not in lines[0]


def test_a_model_that_misplaces_the_personalized_mode_is_named():
    """An RL run can spread the personalized mode onto personas it should set aside, from a sound start."""
    from personadual.experiments.demo_report import stage_check_lines
    from personadual.experiments.grid import check_verdict
    from personadual.eval.verdicts import misplaced_personalized_share, misplaces_personalized_mode

    drifted = {"none": {"general": 0.86, "personalized": 0.14}, "irrelevant": {"general": 0.56, "personalized": 0.44},
               "misaligned": {"general": 0.94, "personalized": 0.06}, "helpful": {"personalized": 0.93},
               "ambiguous": {"general": 0.75, "personalized": 0.25}, "personalized": {"personalized": 1.0}}
    worst = misplaced_personalized_share(drifted)
    assert worst == ("irrelevant", 0.44) and misplaces_personalized_mode(worst)
    assert misplaced_personalized_share({**drifted, "irrelevant": {"general": 1.0}}) == ("ambiguous", 0.25)
    sound = {**{c: {"general": 0.99, "personalized": 0.01} for c in ("none", "irrelevant", "misaligned", "ambiguous")},
             "helpful": {"personalized": 1.0}, "personalized": {"personalized": 1.0}}  # where the persona helps: not counted
    assert misplaced_personalized_share(sound) == ("none", 0.01) and not misplaces_personalized_mode(("none", 0.01))
    assert misplaced_personalized_share({"helpful": {"personalized": 1.0}}) is None and not misplaces_personalized_mode(None)
    check = {"decisive": 239, "n": 536, "decisive_share": 0.446, "answers_differ": {"misaligned": 0.9}, "degenerate": False,
             "misreads_helpful": False, "misplaced": list(worst), "misplaces_personalized": True}
    lines = stage_check_lines({"rl_dual": check})
    assert len(lines) == 2 and "rl_dual MISPLACES the personalized mode: it chooses it on 44% of irrelevant" in lines[1]
    assert check_verdict(check) == "MISPLACES personalized (44% of irrelevant)"
    assert len(stage_check_lines({"rl_dual": {**check, "misplaces_personalized": False}})) == 1
    assert check_verdict({**check, "misplaces_personalized": False}) == "ok"


def test_a_claim_whose_goal_lies_inside_its_paired_interval_is_marked_within_noise(tmp_path):
    """Claim 2 (misaligned within 2 points of none) on 40 questions: a 2.5-point loss is inside the split's
    noise; a 50-point loss is beyond it. The verdict itself stays the point estimate's."""
    from personadual.experiments.demo_report import claim_intervals, noise_sentence, undecided

    def eval_dir(lost: int) -> dict:
        rows = [{"run": "auto", "id": f"q{k}-{c}", "condition": c, "correct": k % 3 > 0 and not (c == "misaligned" and 0 < k <= lost)}
                for k in range(40) for c in ("none", "misaligned", "helpful")]
        rows += [{"run": "auto", "id": f"p{k}-personalized", "condition": "personalized", "correct": True} for k in range(10)]
        for name in ("rl_dual", "sft_dual", "sft_persona_prompted", "sft_personalized_only", "sft_general_only"):
            (tmp_path / str(lost) / name).mkdir(parents=True)
            (tmp_path / str(lost) / name / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        m = {"interference": {"misaligned": 0.0}, "personalized_acc": {"mean": 1.0}, "hacc": 0.5}
        return {n: m for n in ("rl_dual", "sft_dual", "sft_persona_prompted", "sft_personalized_only", "sft_general_only")}

    near = claim_intervals(tmp_path / "1", eval_dir(1), {})
    assert near[1]["goal"] == -0.02 and near[1]["mean"] == -0.025 and undecided(near[1])
    assert "Within the test split's noise" in noise_sentence(near[1]) and "goal -2.0" in noise_sentence(near[1], show_span=False)
    far = claim_intervals(tmp_path / "20", eval_dir(20), {})
    assert far[1]["mean"] < -0.3 and not undecided(far[1]) and "Beyond the split's noise" in noise_sentence(far[1])
    assert far[4] is None and noise_sentence(None) == ""  # no balanced-accuracy comparison given: no interval


@pytest.mark.slow
def test_grid_runs_the_demo_per_seed_and_kernel_then_judges_every_run(tmp_path):
    """Two short runs (the machine's kernels and torch's default ones) as worker processes on their saved plans; a
    rerun reads them back."""
    from personadual.experiments.grid import GridPlan, run_grid

    plan = GridPlan(tmp_path / "grid", seeds=(0,), kernels=("native", "default"), options={"overrides": TOY})
    result = run_grid(plan)
    assert result["n"] == 2 and [r["run"] for r in result["rows"]] == ["s0-native", "s0-default"]
    native, default = result["rows"]
    assert default["cpu_capability"] == "DEFAULT" and native["cpu_capability"] != "DEFAULT"
    for row in result["rows"]:
        assert [c["name"] for c in row["claims"]] == ["naive interference", "near interference-free", "helpful gain",
                                                     "personalized kept", "RL improves"]
        assert row["all_claims"] == all(c["pass"] for c in row["claims"])
        for c in row["claims"]:  # each verdict says whether the toy test split could decide it
            assert c["within_noise"] == (c["interval"] is not None and c["interval"]["lo"] <= c["interval"]["goal"] <= c["interval"]["hi"])
        assert isinstance(row["sft_dual_decisive"], int) and row["seconds"] > 0
        for check in (row["sft_dual_check"], row["rl_dual_check"]):
            assert check in ("DEGENERATE", "ok") or check.startswith(("MISREADS", "MISPLACES"))
        summary = json.loads((tmp_path / "grid" / row["run"] / "summary.json").read_text())
        assert summary["environment"]["ATEN_CPU_CAPABILITY"] == (None if row["kernel"] == "native" else "default")
    md = (tmp_path / "grid" / "grid.md").read_text()
    assert md.startswith(f"# Over seeds x kernels: {result['all_claims']}/2 runs pass all 5 claims")
    assert "| s0-default | DEFAULT |" in md and "beyond the test split's noise" in md
    if result["all_claims"] < 2:  # a toy model fails claims: each failure is spelt out with its figure
        assert "## Claims that fail" in md and "- s0-" in md
    saved = json.loads((tmp_path / "grid" / "s0-native.json").read_text())["jobs"][0]  # the run's plan, not its flags
    assert saved["call"] == "personadual.experiments.demo:run_plan" and saved["config"]["overrides"] == TOY
    assert saved["config"]["out"] == str((tmp_path / "grid" / "s0-native").resolve()) and saved["config"]["seed"] == 0
    stamp = (tmp_path / "grid" / "s0-native" / "summary.json").stat().st_mtime
    again = run_grid(plan)  # both runs complete: nothing reruns
    assert again["rows"] == result["rows"]
    assert (tmp_path / "grid" / "s0-native" / "summary.json").stat().st_mtime == stamp


def test_demo_set_flags_become_stage_overrides():
    import typer

    from personadual.experiments.commands import parse_stage_settings

    assert parse_stage_settings(["sft:max_steps=5", "eval:--max-new-tokens=24", "sft:seed=3"]) == {
        "sft": ["max_steps=5", "seed=3"], "eval": ["--max-new-tokens", "24"]}
    with pytest.raises(typer.Exit):
        parse_stage_settings(["sfx:max_steps=5"])


def test_make_demo_trains_dual_and_grpo_and_demo_full_adds_the_authors_estimator(tmp_path):
    from personadual.experiments.demo import RL_ESTIMATORS, DemoPlan, Stages
    from personadual.experiments.rl_compare import rl_compare

    default = Stages(DemoPlan(tmp_path)).models()
    assert {"rl_dual", "rl_grpo"} <= set(default) and "rl_dual_paper" not in default
    assert "rl_dual_paper" in Stages(DemoPlan(tmp_path, rl_variants=RL_ESTIMATORS)).models()
    out = tmp_path / "demo"
    _finished_demo_stub(out)
    (out / "rl_dual_paper" / "model" / "COMPLETE").unlink()  # a plain `make demo` folder
    with pytest.raises(FileNotFoundError, match="with --full"):
        rl_compare(out, estimators=("dual", "dual_paper"))

"""`personadual study real` at toy size (a tiny local Llama with a ChatML template, no download) and the
templated MMLU traces it trains on."""

import json
from pathlib import Path

import pytest

from personadual.data.conditions import ConditionsConfig, build_conditions
from personadual.data.conditions.templated import general_sentence, templated_traces, with_templated_traces
from personadual.data.loaders import load_source
from personadual.sft.mixes import build_examples

SOURCES = Path(__file__).parent / "fixtures" / "sources"


@pytest.fixture(scope="module")
def mmlu_grid():
    """MMLU rows under every paired condition (and ambiguous where drawn), with templated traces."""
    items = load_source("mmlu", str(SOURCES / "mmlu.jsonl"))
    return with_templated_traces(build_conditions(items, ConditionsConfig(ambiguous_every=1))["test"])


def test_each_condition_gets_the_trace_the_table_says(mmlu_grid):
    seen = set()
    for it in mmlu_grid:
        tr, text = it.traces, general_sentence(it)
        seen.add(it.condition)
        assert tr["general"].answer == it.gold and tr["general"].reasoning == text  # every condition: the gold, stated
        assert text.startswith(f"the answer is {it.gold} : ") and text.endswith(" .")
        personalized = tr["personalized"]
        if it.condition == "none":
            assert (personalized.reasoning, personalized.answer) == (f"no persona . {text}", it.gold)
        elif it.condition == "irrelevant":
            assert (personalized.reasoning, personalized.answer) == (f"persona not relevant . {text}", it.gold)
        else:  # the persona's target, followed: gold under a helpful persona, wrong under a misaligned one
            assert (personalized.reasoning, personalized.answer) == (f"persona says {it.persona_pull} .", it.persona_pull)
        assert it.trace_correct("personalized") == (it.condition != "misaligned" and it.persona_pull in (None, it.gold))
        assert it.preferred_mode == ("personalized" if it.condition == "helpful" else "general")
    assert seen == {"none", "irrelevant", "misaligned", "helpful", "ambiguous"}


def test_the_option_text_comes_from_the_question_and_items_without_texts_get_the_letter(mmlu_grid):
    it = next(i for i in mmlu_grid if i.condition == "none")
    line = next(line for line in it.question.split("\n") if line.startswith(f"{it.gold}. "))
    assert general_sentence(it) == f"the answer is {it.gold} : {line[3:].strip()} ."
    inline = it.model_copy(update={"question": "which is right ? A one . B two .", "options": ["A", "B"], "gold": "B"})
    assert general_sentence(inline) == "the answer is B ."
    with pytest.raises(ValueError, match="objective items"):
        templated_traces(it.model_copy(update={"kind": "personalized", "condition": "personalized"}))
    bad = next(i for i in mmlu_grid if i.condition == "misaligned").model_copy(update={"persona_pull": None})
    with pytest.raises(ValueError, match="persona_pull"):
        templated_traces(bad)


def test_the_mixes_train_what_the_docs_say_on_templated_items(mmlu_grid, tiny_dir):
    """dual: general everywhere but under a helpful persona; persona_prompted: the persona followed whenever there
    is one, a misaligned one included (the naive baseline); personalized_only never trains a wrong trace."""
    from transformers import AutoTokenizer

    from personadual import modes

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    modes.add_marker_tokens(tok)
    general, personalized = (modes.DEFAULT_MODES.get(m).marker for m in ("general", "personalized"))
    opening = {"general": general, "personalized": personalized}
    for it in mmlu_grid:
        (dual,) = build_examples([it], "dual", tok)
        assert dual["completion"].startswith(opening["personalized" if it.condition == "helpful" else "general"])
        assert f'"answer": "{it.gold}"' in dual["completion"]  # dual trains only traces that reach the gold
        (naive,) = build_examples([it], "persona_prompted", tok)
        assert naive["completion"].startswith(opening["personalized" if it.persona else "general"])
        follows = it.persona_pull if it.condition in ("misaligned", "helpful", "ambiguous") else it.gold
        assert f'"answer": "{follows}"' in naive["completion"]  # a misaligned persona is followed: the naive baseline
        assert all(f'"answer": "{it.gold}"' in e["completion"] for e in build_examples([it], "personalized_only", tok))


# --- the study end to end, at toy size


def _mmlu_items(path: Path) -> Path:
    """MMLU-shaped questions in two test subjects and two train subjects (options written out line by line)."""
    from personadual.data.schema import Item, write_items

    items = []
    for k, subject in enumerate(["astronomy"] * 4 + ["virology"] * 2 + ["anatomy"] * 10 + ["high_school_physics"] * 8):
        opts = [f"choice {k}-{j}" for j in range(4)]
        question = f"Question {k} on {subject.replace('_', ' ')}?\n" + "\n".join(f"{l}. {o}" for l, o in zip("ABCD", opts))
        items.append(Item(id=f"mmlu-{k:06d}", kind="objective", family=f"mmlu:{subject}", condition="none",
                          question=question, options=list("ABCD"), gold="ABCD"[k % 4], source="mmlu",
                          meta={"subject": subject, "row": k}))
    write_items(path, items)
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """The tiny GGUF of test_artifacts (a Llama with SmolLM2's ChatML template and default system prompt),
    imported as `personadual model import` does."""
    from test_artifacts import write_tiny_gguf

    from personadual.models.gguf import import_gguf

    root = tmp_path_factory.mktemp("study-model")
    import_gguf(write_tiny_gguf(root / "tiny.gguf"), root / "model")
    return root / "model"


# byte-level tokens: nothing is too long to train on, and the examples need more room than SmolLM2's
TOY = {"data": ["mmlu_train_max_prompt_tokens=100000"], "sft": ["max_length=2048"]}


@pytest.mark.slow
def test_study_runs_every_stage_then_resumes(tmp_path, tiny_llama):
    from personadual.experiments.study_real import StudyPlan, run_study

    out, mmlu = tmp_path / "study", _mmlu_items(tmp_path / "mmlu.jsonl")
    plan = lambda **kw: StudyPlan(out, "smoke", tiny_llama, mmlu, {**TOY, **kw})  # noqa: E731
    summary = run_study(plan())
    assert set(summary["stage_seconds"]) == {"fetch", "data", "audit", "sft", "rl", "eval", "report"}
    for name in ("sft_persona_prompted", "sft_dual", "rl_dual"):
        assert (out / name / "model" / "COMPLETE").exists()
        assert not list((out / name).glob("checkpoint-*"))  # a finished run's resume points are removed
    data = json.loads((out / "data" / "summary.json").read_text())
    assert data["shared_subjects"] == [] and data["mmlu_eval"]["questions"] == 4 and data["mmlu_train"]["items"] == 16
    assert data["mmlu_eval"]["subjects"] == 2 and data["sft_items"]["mmlu"] == 16
    trained = [json.loads(line) for line in (out / "data" / "sft" / "train.jsonl").read_text().splitlines()]
    assert {r["meta"]["subject"] for r in trained if r["source"] == "mmlu"} <= {"anatomy", "high_school_physics"}

    report = (out / "report.md").read_text()
    claims = report.split("## (a)")[1].split("## (b)")[0]
    assert claims.count("- PASS: ") + claims.count("- FAIL: ") == 5 and "not trained here" in claims
    mmlu_part = report.split("## (b)")[1].split("## (c)")[0]
    assert "| model | none | irrelevant | misaligned | helpful | ambiguous | interference | helpful gain | pull: misaligned" \
        in mmlu_part
    for row in ("| base (choice, text) |", "| naive SFT |", "| dual SFT |", "| dual SFT + DualGRPO |"):
        assert row in mmlu_part
    assert "skips the reasoning" in mmlu_part
    generated = mmlu_part.split("reasoning generated")[1]  # the second table: the mode models write their reasoning
    for row in ("| base (plain) |", "| naive SFT |", "| dual SFT |", "| dual SFT + DualGRPO |"):
        assert row in generated
    audit = report.split("## (c)")[1].split("## (d)")[0]
    assert "| choice, text form |" in audit and "| choice, letter form |" in audit and "| plain (free text) |" in audit
    assert "GFLOP/s at 1 thread" in report.split("## (d)")[1]

    assert len(summary["claims"]) == 5 and set(summary["claims"][0]) == {"pass", "text"}
    assert set(summary["personabench"]) == {"base_pb_plain", "base_pb_choice", "sft_persona_prompted_pb", "sft_dual_pb",
                                            "rl_dual_pb"}
    assert set(summary["mmlu"]) == {"base_mmlu_text", "sft_persona_prompted_mmlu", "sft_dual_mmlu", "rl_dual_mmlu"}
    assert set(summary["audit"]) == {"base_mmlu_text", "base_mmlu_letter", "base_mmlu_plain"}
    assert set(summary["mmlu_generated"]) == {"base_mmlu_plain", "sft_persona_prompted_mmlu_gen", "sft_dual_mmlu_gen",
                                              "rl_dual_mmlu_gen"}
    for name in ("sft_persona_prompted_mmlu_gen", "sft_dual_mmlu_gen", "rl_dual_mmlu_gen"):
        gen = summary["mmlu_generated"][name]
        assert gen["protocol"] == "modes" and gen["n"] == data["mmlu_eval"]["plain_items"]
        assert set(gen["paired"]["interference"]) == {"mean", "lo", "hi", "n"}
    for entry in summary["mmlu"].values():
        assert set(entry["pull"]) >= {"misaligned", "helpful"} and set(entry["pull"]["misaligned"]) == {"mean", "lo", "hi", "n"}
        assert set(entry["paired"]["interference"]) == {"mean", "lo", "hi", "n"} and entry["letters"]["answers"]
    assert summary["mmlu"]["rl_dual_mmlu"]["protocol"] == "choice" and summary["audit"]["base_mmlu_plain"]["unreadable"]
    assert summary["machine"][0]["matmul_gflops_1_thread"] > 0
    assert json.loads((out / "summary.json").read_text()) == summary

    stamps = {p: p.stat().st_mtime for p in out.glob("*/model/model.safetensors")}
    metrics = {p: p.stat().st_mtime for p in out.glob("eval/*/metrics.json")}
    again = run_study(plan())  # every stage complete: nothing reruns
    assert again["stage_seconds"] == summary["stage_seconds"]
    assert {p: p.stat().st_mtime for p in out.glob("*/model/model.safetensors")} == stamps
    assert {p: p.stat().st_mtime for p in out.glob("eval/*/metrics.json")} == metrics
    assert len(json.loads((out / "machine.json").read_text())["runs"]) == 2  # each invocation measures the machine

    (out / "eval" / "rl_dual_mmlu" / "metrics.json").unlink()  # as a kill during that evaluation leaves it
    resumed = run_study(plan())
    assert {k for k in resumed["stage_seconds"] if resumed["stage_seconds"][k] != summary["stage_seconds"][k]} <= \
        {"eval", "report"}
    assert (out / "eval" / "rl_dual_mmlu" / "metrics.json").exists()
    assert {p: p.stat().st_mtime for p in out.glob("*/model/model.safetensors")} == stamps  # nothing retrained
    with pytest.raises(ValueError, match="was started with"):
        run_study(plan(rl=["max_steps=2"]))  # other settings into the same folder: refused


def test_study_cli_refuses_bad_settings_before_running_anything(tmp_path):
    from typer.testing import CliRunner

    from personadual.cli import app

    r = CliRunner().invoke(app, ["study", "mmlu-chat", "--out", str(tmp_path / "s"), "--set", "pretrain:max_steps=3"])
    assert r.exit_code == 2 and "STAGE one of data, audit, sft, rl, eval" in r.output
    r = CliRunner().invoke(app, ["study", "mmlu-chat", "--out", str(tmp_path / "s"), "--budget", "huge"])
    assert r.exit_code == 2 and "--budget: expected one of full, smoke" in r.output
    r = CliRunner().invoke(app, ["study", "mmlu-chat", "--out", str(tmp_path / "s"), "--model-dir", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no such directory" in r.output
    assert not (tmp_path / "s").exists()


def test_study_data_settings_are_checked():
    from personadual.config import ConfigError, load_config
    from personadual.experiments.study_data import StudyDataConfig

    cfg = load_config(StudyDataConfig, None, ["bench.train_bases=7", "mmlu_eval_bases=10", "mmlu_plain_bases=3"])
    assert cfg.bench.train_bases == 7 and cfg.mmlu_plain_bases == 3
    with pytest.raises(ConfigError, match="subset of mmlu_eval_bases"):
        load_config(StudyDataConfig, None, ["mmlu_eval_bases=2", "mmlu_plain_bases=3"])
    with pytest.raises(ConfigError, match="mmlu_eval_base"):
        load_config(StudyDataConfig, None, ["mmlu_eval_base=2"])

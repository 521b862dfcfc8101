import json
import subprocess
import sys

from personadual.data import read_items
from personadual.data.personabench import BenchConfig, build, stats
from personadual.data.personabench import vocab

from conftest import SMALL


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "personadual.cli", *args], capture_output=True, text=True)


def test_cli_build_is_byte_identical_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    small = [f"train_bases={SMALL['train_bases']}", "eval_bases={val: 3, test: 3}", "personalized={train: 20, val: 4, test: 4}"]
    for d, seed in ((a, 0), (b, 0), (c, 1)):
        r = _cli("data", "build", "--out", str(d), "--seed", str(seed), *small)
        assert r.returncode == 0, r.stderr
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "stats.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()
    st = json.loads((a / "stats.json").read_text())
    assert set(st["counts"]) == {"train", "val", "test"}
    assert {"family", "condition", "preferred_mode", "total"} <= set(st["counts"]["test"])


def test_cli_rejects_unknown_knob(tmp_path):
    r = _cli("data", "build", "--out", str(tmp_path / "x"), "no_such_knob=1")
    assert r.returncode == 2 and "unknown key(s) ['no_such_knob']" in r.stderr


def test_every_condition_and_family_present(bench_dir):
    test = read_items(bench_dir / "test.jsonl")
    assert {it.condition for it in test} == {"none", "irrelevant", "misaligned", "helpful", "ambiguous", "personalized"}
    assert {it.family for it in test} == {"lookup", "compare", "arith", "convert", "preference"}


def test_eval_splits_are_paired_over_conditions(bench_dir):
    by_base = {}
    for it in read_items(bench_dir / "test.jsonl"):
        if it.kind == "objective":
            by_base.setdefault(it.base_id, []).append(it)
    for group in by_base.values():
        assert {"none", "irrelevant", "misaligned", "helpful"} <= {it.condition for it in group}
        assert len({(it.question, it.gold) for it in group}) == 1  # same question under each persona


def test_test_split_holds_out_names_and_persona_frames(bench_dir):
    train = read_items(bench_dir / "train.jsonl")
    test = read_items(bench_dir / "test.jsonl")
    train_text = " ".join(f"{it.question} {it.persona or ''}" for it in train)
    for name in vocab.NAMES_HELDOUT:
        assert f" {name} " not in train_text
    test_personas = {it.persona for it in test if it.persona}
    assert not test_personas & {it.persona for it in train if it.persona}
    assert any(" Ema " in it.question or " Finn " in it.question for it in test)


def test_preferred_mode_labels_follow_the_paper(bench_dir):
    for it in read_items(bench_dir / "train.jsonl"):
        want = "personalized" if it.condition in ("helpful", "personalized") else "general"
        assert it.preferred_mode == want
        assert it.trace_correct(it.preferred_mode)  # the labelled trace always reaches gold


def test_interference_and_helpfulness_are_built_in():
    splits = build(BenchConfig(seed=3, **{**SMALL, "personalized": {"train": 10, "val": 10, "test": 200}}))
    props = stats(splits)["properties"]["test"]
    # following a misaligned persona leads away from gold on (almost) every item
    assert props["misaligned_personalized_trace_wrong"] >= 0.9
    # a helpful persona's signal is right, and much cheaper than solving from the question
    assert props["helpful_personalized_trace_right"] == 1.0
    words = props["helpful_trace_words"]
    assert words["personalized"] < words["general"]
    # personalized items need the persona
    assert props["personalized_general_trace_right"] < 0.5
    assert props["personalized_personalized_trace_right"] == 1.0
    for it in splits["test"]:
        if it.condition == "misaligned":
            assert it.persona_pull != it.gold and it.persona_pull in it.persona


def test_difficulty_knob_lengthens_compare_traces():
    easy = build(BenchConfig(seed=0, **SMALL, difficulty={"lookup": [3, 3], "compare": [3, 3], "arith": [2, 2], "convert": [1, 1]}))
    hard = build(BenchConfig(seed=0, **SMALL, difficulty={"lookup": [6, 6], "compare": [6, 6], "arith": [4, 4], "convert": [3, 3]}))
    count = lambda s, fam, word: sum(it.traces["general"].reasoning.split().count(word) for it in s["test"] if it.family == fam)  # noqa: E731
    assert count(hard, "compare", ".") > 1.5 * count(easy, "compare", ".")  # one step per person
    assert count(hard, "arith", "+") == 3 * count(easy, "arith", "+")  # one addition per extra number
    assert max(len(it.options) for it in hard["test"] if it.family == "lookup") == 6


def test_the_rl_split_adds_fresh_questions_and_leaves_the_other_splits_byte_identical(tmp_path):
    from personadual.data.personabench import write

    cfg = dict(train_bases=40, eval_bases={"val": 3, "test": 3}, personalized={"train": 20, "val": 4, "test": 4})
    write(BenchConfig(seed=0, **cfg), tmp_path / "plain")
    write(BenchConfig(seed=0, rl_bases=30, rl_personalized=10, **cfg), tmp_path / "rl")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "rl" / name).read_bytes(), name
    assert not (tmp_path / "plain" / "rl.jsonl").exists()
    rl, train = read_items(tmp_path / "rl" / "rl.jsonl"), read_items(tmp_path / "rl" / "train.jsonl")
    assert len(rl) == 4 * 30 + 10 and {it.split for it in rl} == {"rl"}
    assert not {it.question for it in rl} & {it.question for it in train}  # questions stage 1 never trained on
    names = set(vocab.pools("train")["names"])
    assert all(any(f" {n} " in f" {it.question} " for n in names) for it in rl if it.family == "lookup")  # train's words
    assert json.loads((tmp_path / "rl" / "stats.json").read_text())["counts"]["rl"]["total"] == len(rl)


def test_rl_condition_weights_shape_the_rl_split_only(tmp_path):
    import pytest

    only = {"none": 0.0, "irrelevant": 0.0, "misaligned": 1.0, "helpful": 0.0, "ambiguous": 0.0}
    splits = build(BenchConfig(seed=0, train_bases=20, rl_bases=20, rl_condition_weights=only, **{
        "eval_bases": {"val": 2, "test": 2}, "personalized": {"train": 2, "val": 2, "test": 2}}))
    assert {it.condition for it in splits["rl"]} == {"misaligned"}
    assert len({it.condition for it in splits["train"]}) > 1
    with pytest.raises(ValueError, match="rl_condition_weights must sum to 1"):
        BenchConfig(rl_condition_weights={"none": 0.5})


def test_records_questions_can_only_be_guessed_without_the_persona():
    """The records family gives no fact about its question: the general trace always guesses A (right exactly when
    the gold is A), while a helpful persona names the gold, so only that persona leads to it."""
    splits = build(BenchConfig(seed=0, families=("lookup", "records"), difficulty={"lookup": [3, 5], "records": [3, 5]},
                               train_bases=60, eval_bases={"val": 2, "test": 30}, personalized={"train": 2, "val": 2, "test": 2}))
    recs = [it for it in splits["test"] if it.family == "records"]
    assert recs and {it.traces["general"].answer for it in recs} == {"A"}
    assert all(it.trace_correct("general") == (it.gold == "A") for it in recs)
    assert 0.1 < sum(it.gold == "A" for it in recs) / len(recs) < 0.5  # the gold is drawn, not the guess
    helpful = [it for it in recs if it.condition == "helpful"]
    assert helpful and all(it.trace_correct("personalized") and it.gold in it.persona for it in helpful)
    none = [it for it in recs if it.condition == "none"]
    assert all(it.traces["personalized"].answer == "A" for it in none)  # no persona: the personalized mode guesses too


"""The plain protocol: models without mode markers, answers read from free text."""

import json

import pytest

from conftest import sft_overrides
from personadual.answers import read_answer
from personadual.data import read_items

OPTIONS = ["A", "B", "C", "D"]
TEXTS = {"A": "Ampere", "B": "Coulomb", "C": "Volt", "D": "Ohm"}


@pytest.mark.parametrize("reply,answer,how", [
    ('so it is B\n<answer> {"answer": "C"} </answer>', "C", "answer block"),
    ("I first thought A. On reflection, the answer is (C).", "C", "stated"),
    ("The answer is A. Wait, no: the final answer: D", "D", "stated"),
    ("Answer: B<|im_end|>", "B", "stated"),
    ("**B**\nCharge is measured in coulombs.", "B", "stated"),
    ("B", "B", "lone letter"),
    ("(B)", "B", "lone letter"),
    ("B) Coulomb", "B", "lone letter"),
    ("coulomb.", "B", "option text"),
    ("A man measured it once.", None, "unreadable"),  # an article, not a letter
    ("the answer is a good question", None, "unreadable"),  # a lower-case 'a' states nothing
    ("the answer is E", None, "unreadable"),  # not one of the options: free text is only read as an option
    ('<answer> {"answer": "E"} </answer>', "E", "answer block"),  # stated explicitly: read as written, wrong
    ("", None, "unreadable"),
])
def test_read_answer_takes_the_most_explicit_reading(reply, answer, how):
    r = read_answer(reply, OPTIONS, TEXTS)
    assert (r.answer, r.how) == (answer, how)


@pytest.fixture(scope="module")
def plain_model(bench_dir, tiny_dir, tmp_path_factory):
    """The tiny model after a short 'pretraining': objective traces and answer blocks, never a marker."""
    from personadual.config import load_config
    from personadual.sft.config import SFTRunConfig
    from personadual.sft.train import main

    out = tmp_path_factory.mktemp("plain")
    main(load_config(SFTRunConfig, None, sft_overrides(tiny_dir, bench_dir, out, mix="pretrain", max_steps=60)))
    return out / "model"


def test_plain_eval_of_a_model_without_modes(plain_model, bench_dir, tmp_path):
    from personadual.eval.run import evaluate

    m = evaluate(str(plain_model), str(bench_dir), str(tmp_path / "ev"), protocol="plain", max_new_tokens=48)
    assert m["protocol"] == "plain"
    for key in ("hacc", "mode_share", "preferred_mode_agreement", "marker_mass", "calibration", "forced"):
        assert key not in m
    preds = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    items = {it.id: it for it in read_items(bench_dir / "test.jsonl")}
    assert {p["run"] for p in preds} == {"auto"} and len(preds) == len(items)
    assert all(p["mode"] is None and p["p_mode"] == {} for p in preds)
    assert not any("[General_mode]" in p["text"] or "[Personalized_mode]" in p["text"] for p in preds)
    read = [p for p in preds if p["well_formed"]]
    assert read, "the pretrained model writes answer blocks: some answers must be read"
    assert all(p["answer"] for p in read)
    assert all(p["correct"] == (p["answer"] == items[p["id"]].gold) for p in preds)
    unread = [p for p in preds if not p["well_formed"]]
    assert m["unreadable"] == {"n": len(unread), "rate": round(len(unread) / len(preds), 4)}
    assert all(p["answer"] is None and not p["correct"] for p in unread)  # unreadable counts as wrong
    assert "unreadable answers" in (tmp_path / "ev" / "report.md").read_text()


def test_protocol_auto_follows_the_markers_and_modes_names_the_way_out(qwen3_plain, tmp_path):
    from personadual.engine import load_engine

    assert load_engine(qwen3_plain, protocol="auto").protocol == "plain"  # a real model that never met the markers
    with pytest.raises(ValueError, match="--protocol plain"):
        load_engine(qwen3_plain, protocol="modes")
    eng = load_engine(qwen3_plain, protocol="plain")
    with pytest.raises(ValueError, match="no mode markers"):
        eng.generate([eng.render_prompt("q?", None)], "general")


def test_eval_cli_plain_refuses_a_forced_mode(qwen3_plain, bench_dir, tmp_path):
    from typer.testing import CliRunner

    from personadual.cli import app

    r = CliRunner().invoke(app, ["eval", "--model", str(qwen3_plain), "--data", str(bench_dir), "--out",
                                 str(tmp_path / "ev"), "--mode", "general", "--limit", "2"])
    assert r.exit_code == 2 and "no mode markers" in r.output
    r = CliRunner().invoke(app, ["eval", "--model", str(qwen3_plain), "--data", str(bench_dir), "--out",
                                 str(tmp_path / "ev"), "--limit", "3", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["protocol"] == "plain"  # after transformers' progress bar


@pytest.fixture(scope="module")
def qwen3_plain(tmp_path_factory):
    """A random-init 2-layer Qwen3 on the genuine tokenizer, no markers registered: a plain model."""
    from personadual.models.real_vocab import RealVocabConfig, init_model

    out = tmp_path_factory.mktemp("qwen3-plain")
    init_model(out, RealVocabConfig())
    return out

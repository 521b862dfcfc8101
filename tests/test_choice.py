"""The choice protocol (options scored by log-likelihood), the engine's scoring, persona pull and the
answers' letter distribution."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from personadual.cli import app
from personadual.data import read_items
from personadual.data.options import option_texts
from personadual.engine import Engine
from personadual.engine.logprobs import Scorer
from personadual.eval.choice import LETTER_PREFIX, TEXT_PREFIX, choice_runs, letter_token_ids, mode_lead, softmax
from personadual.eval.metrics import letter_distribution, persona_pull
from personadual.eval.predictions import Prediction, load_predictions
from personadual.tokenization import completion_ids, prompt_ids

SOURCES = Path(__file__).parent / "fixtures" / "sources"


@pytest.fixture(scope="module")
def mmlu_cond(tmp_path_factory):
    """MMLU rows under every persona condition: options written out line by line, so they have texts."""
    from personadual.data.conditions import ConditionsConfig, write_conditions
    from personadual.data.loaders import load_source

    out = tmp_path_factory.mktemp("mmlu_cond")
    write_conditions(load_source("mmlu", str(SOURCES / "mmlu.jsonl")), ConditionsConfig(), out)
    return out


@pytest.fixture(scope="module")
def qwen3_plain(tmp_path_factory):
    """A random-init 2-layer Qwen3 on the genuine tokenizer, no markers: a plain model directory."""
    from personadual.models.real_vocab import RealVocabConfig, init_model

    out = tmp_path_factory.mktemp("qwen3-plain")
    init_model(out, RealVocabConfig())
    return out


def plain_engine(tiny_dir) -> Engine:
    return Engine.load(str(tiny_dir), protocol="plain")


def naive_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(next token | prefix) at every position of one unpadded row: the full forward, nothing gathered."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)


def naive_continuation(model, context: list[int], continuation: list[int]) -> float:
    lp = naive_logprobs(model, context + continuation)
    return sum(float(lp[len(context) - 1 + t, tok]) for t, tok in enumerate(continuation))


# --- the engine's scoring, against one full forward per row


ROWS = [([5, 6, 7, 8, 9], [20, 21]), ([10, 11], [22]), ([12, 13, 14, 15, 16, 17, 18], [23, 24, 25]), ([30], [31, 32])]


def test_batched_gathered_scoring_equals_a_naive_forward_per_row(tiny_dir):
    eng = plain_engine(tiny_dir)
    assert eng.scorer.gathered  # a Qwen3: decoder -> head, so only the scored positions get the head
    contexts, continuations = [x for x, _ in ROWS], [c for _, c in ROWS]
    want = [naive_continuation(eng.model, x, c) for x, c in ROWS]
    assert eng.score_continuations(contexts, continuations, batch_size=3) == pytest.approx(want, abs=1e-4)
    assert Scorer(eng.model, eng.pad_id, gathered=False).continuation_logprobs(contexts, continuations, 2) == \
        pytest.approx(want, abs=1e-4)
    cands = [[1, 2], [3], [4, 5, 6], [7]]
    got = eng.next_token_logprobs(contexts, cands, batch_size=2)
    for (x, _), c, g in zip(ROWS, cands, got):
        assert g == pytest.approx(naive_logprobs(eng.model, x)[-1, c].tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="at least one token"):
        eng.score_continuations([[1]], [[]])


def test_a_model_that_changes_its_logits_after_the_head_is_scored_by_its_own_forward(tiny_dir):
    eng = plain_engine(tiny_dir)
    forward = eng.model.forward

    def scaled(*args, **kwargs):  # as a logit soft-cap or scale would: the head alone is no longer the logits
        out = forward(*args, **kwargs)
        out.logits = out.logits * 3.0
        return out

    eng.model.forward = scaled
    assert not eng.scorer.gathered
    want = [naive_continuation(eng.model, x, c) for x, c in ROWS]
    assert eng.score_continuations([x for x, _ in ROWS], [c for _, c in ROWS], batch_size=2) == pytest.approx(want, abs=1e-4)


def _tiny_llama():
    """A random 2-layer Llama (SmolLM2's architecture: grouped KV heads, tied table), built from a config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
@pytest.mark.parametrize("gathered", [True, False])
def test_shared_prefix_branches_equal_a_naive_forward_per_row(tiny_dir, arch, gathered):
    """Each prefix runs once and its branches read from its cache: the log-probs must be the full row's."""
    from personadual.engine.prefix import Branch, branch_logprobs

    model = plain_engine(tiny_dir).model if arch == "qwen3" else _tiny_llama()
    scorer = Scorer(model, pad_id=0, gathered=gathered)
    prefixes = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18]]
    branches = [Branch(0, (20, 21, 22), ((0, (1, 2)), (1, (21,)), (3, (3, 4, 5)))),
                Branch(0, (23,), ((1, (6,)),)),
                Branch(1, (), ((0, (7, 8)),)),  # read at the prefix's end only: no branch pass
                Branch(2, (24, 25, 26, 27), ((2, (26,)), (4, (9,)))),
                Branch(3, (28, 29), ((0, (10,)), (2, (11, 12)))),
                Branch(1, (30,), ((1, (13,)), (0, (14,))))]
    got = branch_logprobs(scorer, prefixes, branches, batch_size=3)  # several batches, prefixes of mixed lengths
    for b, reads in zip(branches, got):
        lp = naive_logprobs(model, prefixes[b.prefix] + list(b.ids))
        for (pos, cands), values in zip(b.reads, reads):
            assert values == pytest.approx(lp[len(prefixes[b.prefix]) - 1 + pos, list(cands)].tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="outside its branch"):
        branch_logprobs(scorer, prefixes, [Branch(0, (1,), ((2, (3,)),))])
    with pytest.raises(ValueError, match="at least one token"):
        branch_logprobs(scorer, [[]], [Branch(0, (), ((0, (1,)),))])


def test_length_batches_cap_rows_and_padding():
    from personadual.engine.logprobs import length_batches

    lengths = [1000, 160, 150, 150, 140, 140, 130, 120, 20]
    order = list(range(len(lengths)))  # longest first
    batches = length_batches(order, lengths, rows=4)
    assert batches == [[0], [1, 2, 3, 4], [5, 6, 7], [8]]  # the long row alone; 20 would pad to 140: its own
    for b in batches:
        width, real = max(lengths[i] for i in b), sum(lengths[i] for i in b)
        assert len(b) <= 4 and (len(b) == 1 or len(b) * width <= 1.25 * real)
    assert sorted(i for b in batches for i in b) == order
    assert length_batches(order[::-1], lengths, rows=3, weight=[1] * 8 + [3]) == [[8], [7, 6, 5], [4, 3, 2], [1], [0]]
    assert length_batches([], [], rows=4) == []


# --- the letter form


def test_letter_form_reads_the_letter_the_model_is_made_to_prefer(tiny_dir, bench_dir):
    eng = plain_engine(tiny_dir)
    items = read_items(bench_dir / "test.jsonl")
    before = choice_runs(eng, items, "letter")[0]["auto"]
    target = "A" if any(p.answer != "A" for p in before) else "B"  # every item has options A and B
    assert any(p.answer != target for p in before), "the bias below must be what decides"
    (tid,) = letter_token_ids(eng.tokenizer, LETTER_PREFIX, [target])
    head = eng.model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    biased.weight = head.weight  # the same (tied) table, plus a bias that makes one letter dominate
    with torch.no_grad():
        biased.bias.zero_()
        biased.bias[tid] = 30.0
    eng.model.set_output_embeddings(biased)
    runs, info = choice_runs(eng, items, "letter", batch_size=16)
    assert list(runs) == ["auto"] and info["items_by_form"] == {"letter": len(items)}
    for it, p in zip(items, runs["auto"]):
        assert p.answer == target and p.correct == (it.gold == target) and p.well_formed and p.mode is None
        assert list(p.option_probs) == it.options and sum(p.option_probs.values()) == pytest.approx(1, abs=1e-5)
        assert p.option_probs[target] > 0.99 and p.text == "choice:letter"


def test_letter_form_refuses_a_letter_that_is_not_one_token_after_the_prefix(tiny_dir, bench_dir):
    eng = plain_engine(tiny_dir)
    eng.tokenizer.add_tokens(["(A"])  # "The answer is (A" now ends in one merged token: no letter position to read
    with pytest.raises(ValueError, match=r"option 'A' after 'The answer is \(' is not one token.*--choice-form text"):
        choice_runs(eng, read_items(bench_dir / "test.jsonl")[:2], "letter")


# --- the text form


def test_text_form_equals_a_naive_forward_per_option(tiny_dir, mmlu_cond):
    eng = plain_engine(tiny_dir)
    items = read_items(mmlu_cond / "test.jsonl")
    runs, info = choice_runs(eng, items, "text", batch_size=3)
    assert info["items_by_form"] == {"text": len(items)} and "acc_norm" in info["scored"]["text"]
    tok, head = eng.tokenizer, completion_ids(eng.tokenizer, TEXT_PREFIX)
    for it, p in zip(items, runs["auto"]):
        context = prompt_ids(tok, [eng.render_prompt(it.question, it.persona)])[0] + head
        scores = {}
        for k, text in option_texts(it).items():
            joint = completion_ids(tok, TEXT_PREFIX + " " + text)
            assert joint[: len(head)] == head
            scores[k] = naive_continuation(eng.model, context, joint[len(head):]) / len(text)  # per character
        assert p.option_probs == pytest.approx(softmax(scores), abs=1e-5)
        assert p.answer == max(scores, key=scores.get) and p.text == "choice:text"
        assert p.persona_pull == it.persona_pull


def test_text_form_falls_back_to_letters_where_an_item_has_no_option_texts(tiny_dir, mmlu_cond, bench_dir):
    eng = plain_engine(tiny_dir)
    inline, lined = read_items(bench_dir / "test.jsonl")[:3], read_items(mmlu_cond / "test.jsonl")[:4]
    runs, info = choice_runs(eng, inline + lined, "text")
    assert info["items_by_form"] == {"text": 4, "letter": 3}
    assert [p.text for p in runs["auto"]] == ["choice:letter"] * 3 + ["choice:text"] * 4


# --- a mode model


def test_mode_model_scores_letters_in_each_forced_answer_block_and_assembles_auto(tiny_dir, bench_dir):
    eng = Engine.load(str(tiny_dir), protocol="modes")
    items = read_items(bench_dir / "test.jsonl")[:12]
    runs, info = choice_runs(eng, items, "text")  # text asked: a mode model's answer block holds a letter
    assert set(runs) == {"auto", "general", "personalized"} and info["items_by_form"] == {"letter": len(items)}
    p_mode, _ = eng.mode_stats([eng.render_prompt(it.question, it.persona) for it in items])
    for i, (it, auto) in enumerate(zip(items, runs["auto"])):
        chosen = eng.modes.names[int(p_mode[i].argmax())]
        assert auto.mode == chosen and auto.requested_mode == "auto"
        assert auto.answer == runs[chosen][i].answer and auto.option_probs == runs[chosen][i].option_probs
        assert sum(auto.p_mode.values()) == pytest.approx(1, abs=1e-5) and 0 < auto.marker_mass < 1
        assert auto.p_mode == pytest.approx(dict(zip(eng.modes.names, p_mode[i].tolist())), abs=1e-5)
    for name in eng.modes.names:  # each forced run: the letters after the marker line and the open answer block
        it, p = items[0], runs[name][0]
        assert p.mode == name and p.requested_mode == name
        context = eng.prompt_ids([eng.render_prompt(it.question, it.persona)])[0] + completion_ids(
            eng.tokenizer, mode_lead(name, eng.modes))
        lp = naive_logprobs(eng.model, context)[-1]
        want = softmax({k: float(lp[t]) for k, t in zip(it.options, letter_token_ids(
            eng.tokenizer, mode_lead(name, eng.modes), it.options))})
        assert p.option_probs == pytest.approx(want, abs=1e-5)
    unforced = choice_runs(eng, items, "letter", forced=False)[0]
    assert list(unforced) == ["auto"] and [p.answer for p in unforced["auto"]] == [p.answer for p in runs["auto"]]
    assert mode_lead("general", eng.modes) == '[General_mode]\n<answer> {"answer": "'


def test_choice_eval_of_a_mode_model_has_the_mode_metrics(tiny_dir, bench_dir, tmp_path):
    from personadual.eval.run import evaluate

    m = evaluate(str(tiny_dir), str(bench_dir), str(tmp_path / "ev"), protocol="choice")
    assert m["protocol"] == "choice" and m["choice"]["items_by_form"] == {"letter": m["n"]}
    for key in ("hacc", "decisive", "mode_share", "calibration", "forced", "marker_mass", "pull", "letters"):
        assert key in m, key
    assert "unreadable" not in m and m["format_error_rate"] == 0.0
    assert "reasoning is skipped" in (tmp_path / "ev" / "report.md").read_text()


# --- persona pull and letters, by hand


def pred(base, cond, answer, probs=None, pull=None, gold="A"):
    return Prediction(id=f"{base}-{cond}", base_id=base, family="f", kind="objective", condition=cond, gold=gold,
                      preferred_mode=None, requested_mode="auto", mode=None, answer=answer, correct=answer == gold,
                      well_formed=True, reason="", p_mode={}, text="", persona_pull=pull, option_probs=probs)


def test_persona_pull_by_hand():
    preds = [
        pred("b1", "none", "A", {"A": .5, "B": .3, "C": .2}),
        pred("b1", "misaligned", "B", {"A": .2, "B": .7, "C": .1}, pull="B"),  # B: .3 -> .7, +.4
        pred("b1", "helpful", "A", {"A": .8, "B": .1, "C": .1}, pull="C"),  # the target is gold: A .5 -> .8, +.3
        pred("b1", "irrelevant", "B", {"A": .1, "B": .8, "C": .1}),  # no target: no pull
        pred("b2", "none", "A", {"A": .6, "B": .2, "C": .2}),
        pred("b2", "misaligned", "A", {"A": .4, "B": .2, "C": .4}, pull="C"),  # C: .2 -> .4, +.2
        pred("b2", "helpful", "A", {"A": .5, "B": .3, "C": .2}, pull="A"),  # A: .6 -> .5, -.1
        pred("b3", "misaligned", "B", {"A": .0, "B": 1.0, "C": .0}, pull="B"),  # no none partner: not paired
    ]
    pull = persona_pull(preds, n_boot=200)
    assert set(pull) == {"misaligned", "helpful"}
    assert pull["misaligned"]["mean"] == pytest.approx(0.3) and pull["misaligned"]["n"] == 2
    assert pull["helpful"]["mean"] == pytest.approx(0.1) and pull["helpful"]["n"] == 2
    assert pull["misaligned"]["lo"] == pytest.approx(0.2) and pull["misaligned"]["hi"] == pytest.approx(0.4)
    generated = [  # no option probabilities: the indicator of answering the target
        pred("b1", "none", "A"), pred("b1", "misaligned", "B", pull="B"),  # 0 -> 1
        pred("b2", "none", "C"), pred("b2", "misaligned", "A", pull="C"),  # 1 -> 0
        pred("b3", "none", "B"), pred("b3", "misaligned", "B", pull="B"),  # 1 -> 1
        pred("b4", "none", "B"), pred("b4", "ambiguous", "B", pull="B"),  # 1 -> 1
    ]
    pull = persona_pull(generated, n_boot=200)
    assert pull["misaligned"]["mean"] == 0.0 and pull["misaligned"]["n"] == 3 and pull["ambiguous"]["mean"] == 0.0
    letters = letter_distribution(generated + [pred("b5", "none", None)])
    assert letters == {"answers": {"A": 0.25, "B": 0.625, "C": 0.125}, "gold": {"A": 1.0}, "n": 8, "one_option": False}


def test_old_predictions_load_and_new_ones_give_back_their_pull(tmp_path):
    old = {"id": "x", "base_id": "b", "family": "f", "kind": "objective", "condition": "none", "gold": "A",
           "preferred_mode": None, "requested_mode": "auto", "mode": None, "answer": "A", "correct": True,
           "well_formed": True, "reason": "", "p_mode": {}, "text": "A", "run": "auto"}
    (tmp_path / "predictions.jsonl").write_text(json.dumps(old) + "\n")
    (p,) = load_predictions(tmp_path)["auto"]
    assert p.persona_pull is None and p.option_probs is None and p.marker_mass is None
    rows = [pred("b1", "none", "A", {"A": .5, "B": .5}), pred("b1", "misaligned", "B", {"A": .1, "B": .9}, pull="B")]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps({**r.to_dict(), "run": "auto"}) + "\n" for r in rows))
    assert load_predictions(tmp_path)["auto"] == rows
    assert persona_pull(load_predictions(tmp_path)["auto"])["misaligned"]["mean"] == pytest.approx(0.4)


# --- the command line


def test_choice_with_an_endpoint_or_a_stray_form_is_a_clear_error(bench_dir, tmp_path):
    r = CliRunner().invoke(app, ["eval", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--data",
                                 str(bench_dir), "--out", str(tmp_path), "--protocol", "choice"])
    assert r.exit_code == 2 and "--protocol choice" in r.output and "endpoint" in r.output
    r = CliRunner().invoke(app, ["eval", "--model", "m", "--data", str(bench_dir), "--protocol", "plain",
                                 "--choice-form", "letter"])
    assert r.exit_code == 2 and "--choice-form applies to --protocol choice only" in r.output


def test_choice_refuses_the_vllm_engine_before_loading_anything(bench_dir, tmp_path):
    from personadual.engine.vllm_engine import VLLMEngine
    from personadual.eval.run import evaluate

    with pytest.raises(ValueError, match="HF engine"):
        evaluate("no-such-model", str(bench_dir), str(tmp_path), protocol="choice", backend="vllm")
    with pytest.raises(ValueError, match="does not score option log-likelihoods"):
        VLLMEngine.__new__(VLLMEngine).score_continuations([[1]], [[2]])


def test_eval_cli_choice_end_to_end(tiny_dir, qwen3_plain, bench_dir, mmlu_cond, tmp_path):
    from personadual.eval.report import compare_runs

    r = CliRunner().invoke(app, ["eval", "--model", str(tiny_dir), "--data", str(bench_dir), "--out",
                                 str(tmp_path / "modes"), "--protocol", "choice", "--name", "tiny"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)  # stdout is the summary alone; the progress bar is on stderr
    assert "eval: 100%" in r.stderr
    assert summary["protocol"] == "choice" and set(summary["pull"]) == {"misaligned", "helpful", "ambiguous"}
    assert summary["choice"]["items_by_form"] == {"letter": len(read_items(bench_dir / "test.jsonl"))}
    m = json.loads((tmp_path / "modes" / "metrics.json").read_text())
    assert set(m["pull"]["misaligned"]) == {"mean", "lo", "hi", "n"}
    assert sum(m["letters"]["answers"].values()) == pytest.approx(1, abs=1e-3)
    assert m["pull"] == persona_pull(load_predictions(tmp_path / "modes")["auto"])  # from predictions.jsonl alone

    r = CliRunner().invoke(app, ["eval", "--model", str(qwen3_plain), "--data", str(mmlu_cond), "--out",
                                 str(tmp_path / "plain"), "--protocol", "choice", "--name", "qwen3", "--no-progress"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert "eval:" not in r.stderr and summary["choice"]["items_by_form"] == {"text": len(read_items(mmlu_cond / "test.jsonl"))}
    assert set(summary["pull"]) >= {"misaligned", "helpful"} and summary["answer_letters"]
    text = compare_runs([str(tmp_path / "modes"), str(tmp_path / "plain")], tmp_path / "rep")
    assert "| tiny | choice (letter) |" in text and "| qwen3 | choice (text) |" in text and "pull: misaligned" in text


def test_in_process_generation_has_a_progress_bar_too(qwen3_plain, bench_dir, tmp_path):
    r = CliRunner().invoke(app, ["eval", "--model", str(qwen3_plain), "--data", str(bench_dir), "--out",
                                 str(tmp_path / "ev"), "--protocol", "plain", "--limit", "3", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert "eval: 100%" in r.stderr and "3/3" in r.stderr
    summary = json.loads(r.stdout)
    assert summary["protocol"] == "plain" and "pull" in summary and "answer_letters" in summary

"""The cloze forms of the choice protocol, personas that name options by their text, and the one-option flag."""

import json

import pytest
import torch

from personadual.data import read_items
from personadual.data.conditions import ConditionsConfig, build_conditions
from personadual.data.options import option_texts, question_stem
from personadual.data.schema import Item
from personadual.engine import Engine
from personadual.eval.choice import TEXT_PREFIX, choice_runs, cloze_question, following_ids, softmax
from personadual.eval.metrics import letter_distribution
from personadual.modes import forced_prefix
from personadual.tokenization import completion_ids, prompt_ids
from test_choice import mmlu_cond, naive_continuation, qwen3_plain  # noqa: F401 (fixtures)

LONG = "put eyelash glue on the fake eyelashes, let it get tacky, then place them on top of your own and let them dry"


def _item(stem: str, texts: list[str], gold: str = "A", **kw) -> Item:
    letters = "ABCDE"[: len(texts)]
    lined = "\n".join(f"{k}. {t}" for k, t in zip(letters, texts))
    return Item(id=kw.pop("id", "q1"), kind="objective", family=kw.pop("family", "piqa"), condition="none",
                question=f"{stem}\n{lined}", options=list(letters), gold=gold, preferred_mode="general", **kw)


def test_the_stem_is_the_question_without_its_option_lines(mmlu_cond):
    for it in read_items(mmlu_cond / "test.jsonl"):
        stem = question_stem(it)
        assert stem and it.question.startswith(stem) and not any(t in stem for t in option_texts(it).values())
    assert question_stem(_item("Q?", ["a", "b"], meta={"stem": "Kept as loaded"})) == "Kept as loaded"
    assert question_stem(_item("", ["a", "b"])) == ""  # no question apart from the options: nothing to ask


def test_cloze_form_lists_no_options_and_equals_a_naive_forward_per_option(tiny_dir, mmlu_cond):
    eng = Engine.load(str(tiny_dir), protocol="plain")
    items = read_items(mmlu_cond / "test.jsonl")
    runs, info = choice_runs(eng, items, "cloze", batch_size=3)
    assert info["items_by_form"] == {"cloze": len(items)} and "options not listed" in info["scored"]["cloze"]
    tok, head = eng.tokenizer, completion_ids(eng.tokenizer, TEXT_PREFIX)
    for it, p in zip(items, runs["auto"]):
        text = cloze_question(question_stem(it), it.persona) + "\n"
        assert ("my question is: " in text) == (it.persona is not None) and "\nA. " not in text
        context = prompt_ids(tok, [text])[0] + head
        scores = {k: naive_continuation(eng.model, context, following_ids(tok, TEXT_PREFIX, " " + t)) / len(t)
                  for k, t in option_texts(it).items()}
        assert p.option_probs == pytest.approx(softmax(scores), abs=1e-5) and p.text == "choice:cloze"
    chat = choice_runs(eng, items[:3], "cloze-chat")[0]["auto"]
    assert [p.text for p in chat] == ["choice:cloze-chat"] * 3


def test_cloze_form_chooses_the_option_text_the_model_is_made_to_prefer(qwen3_plain):  # noqa: F811
    eng = Engine.load(str(qwen3_plain), protocol="plain")
    items = [_item("Which one do you eat?", ["stone", "apple"], gold="B"),
             _item("Which one is heavy?", ["apple", "stone"], gold="B", id="q2")]
    (apple,) = following_ids(eng.tokenizer, TEXT_PREFIX, " apple")  # one token: the bias decides the whole option
    head = eng.model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    biased.weight = head.weight
    with torch.no_grad():
        biased.bias.zero_()
        biased.bias[apple] = 30.0
    eng.model.set_output_embeddings(biased)
    preds = choice_runs(eng, items, "cloze")[0]["auto"]
    assert [p.answer for p in preds] == ["B", "A"] and [p.correct for p in preds] == [True, False]
    assert all(max(p.option_probs.values()) > 0.99 for p in preds)


def test_a_mode_model_in_the_cloze_form_scores_texts_after_its_forced_marker(tiny_dir, mmlu_cond):
    eng = Engine.load(str(tiny_dir), protocol="modes")
    items = read_items(mmlu_cond / "test.jsonl")[:6]
    runs, info = choice_runs(eng, items, "cloze")
    assert set(runs) == {"auto", "general", "personalized"} and info["items_by_form"] == {"cloze": len(items)}
    prompts = [cloze_question(question_stem(it), it.persona) + "\n" for it in items]
    p_mode, _ = eng.mode_stats(prompts)
    tok = eng.tokenizer
    for i, it in enumerate(items):
        assert runs["auto"][i].p_mode == pytest.approx(dict(zip(eng.modes.names, p_mode[i].tolist())), abs=1e-5)
        for name in eng.modes.names:
            lead = forced_prefix(name, eng.modes) + TEXT_PREFIX
            context = prompt_ids(tok, [prompts[i]])[0] + completion_ids(tok, lead)
            want = {k: naive_continuation(eng.model, context, following_ids(tok, lead, " " + t)) / len(t)
                    for k, t in option_texts(it).items()}
            assert runs[name][i].option_probs == pytest.approx(softmax(want), abs=1e-5)


def test_personas_name_options_by_their_text_and_a_subject_a_person_can_hold():
    items = [_item(f"How do you put eyelashes on? ({i})", ["glue them on with mascara", LONG], gold="B", id=f"q{i}")
             for i in range(40)]
    cfg = ConditionsConfig(seed=0, splits={"test": 1.0}, option_refs="text", ambiguous_every=1)
    out = build_conditions(items, cfg)["test"]
    with_persona = [it for it in out if it.condition in ("misaligned", "helpful", "ambiguous")]
    assert with_persona and all(it.meta["persona_kind"] != "letter" for it in with_persona)
    for it in with_persona:
        named = [t for t in option_texts(it).values() if f'"{t}"' in it.persona]
        assert named and "option " not in it.persona, it.persona
        assert it.condition != "helpful" or f'"{LONG}"' in it.persona  # the gold, long as it is
    subjects = {it.persona for it in with_persona if "home economics" in it.persona}
    assert subjects and not any(" in piqa" in it.persona or "of piqa" in it.persona for it in with_persona)
    default = build_conditions(items, ConditionsConfig(seed=0, splits={"test": 1.0}, ambiguous_every=1))["test"]
    assert any("option B" in (it.persona or "") or it.meta["persona_kind"] == "letter" for it in default)
    with pytest.raises(ValueError, match="option_refs: expected any or text"):
        ConditionsConfig(option_refs="letters")


def test_given_splits_are_kept_when_asked():
    items = [_item(f"Q{i}?", ["a", "b"], id=f"q{i}", split=("train" if i % 2 else "test")) for i in range(6)]
    out = build_conditions(items, ConditionsConfig(splits={"train": 0.5, "test": 0.5}, keep_splits=True))
    assert {it.base_id for it in out["train"]} == {"q1", "q3", "q5"}
    with pytest.raises(ValueError, match="keep_splits: an item's split 'train' is not among the splits"):
        build_conditions(items, ConditionsConfig(splits={"test": 1.0}, keep_splits=True))


def test_an_evaluation_that_answers_one_option_is_flagged(tmp_path):
    from personadual.eval.report import model_report
    from personadual.eval.predictions import Prediction

    def pred(i, answer):
        return Prediction(id=f"x{i}", base_id=f"x{i}", family="piqa", kind="objective", condition="none", gold="A",
                          preferred_mode=None, requested_mode="auto", mode=None, answer=answer,
                          correct=answer == "A", well_formed=True, reason="", p_mode={}, text="choice:cloze")

    assert letter_distribution([pred(i, "A") for i in range(9)] + [pred(9, "B")])["one_option"]
    assert not letter_distribution([pred(i, "A") for i in range(8)] + [pred(8, "B"), pred(9, "B")])["one_option"]
    from personadual.eval.metrics import compute_metrics

    m = compute_metrics({"auto": [pred(i, "A") for i in range(10)]}, protocol="choice", modes=False)
    assert "ONE OPTION" in model_report(json.loads(json.dumps(m)))


def test_cloze_sft_examples_teach_the_form_the_choice_protocol_reads(tiny_dir, mmlu_cond, bench_dir):
    from personadual.data.conditions.templated import with_templated_traces
    from personadual.sft.mixes import build_examples
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    mmlu = with_templated_traces(read_items(mmlu_cond / "test.jsonl"))
    pb = read_items(bench_dir / "train.jsonl")[:5]
    examples = build_examples(mmlu + pb, "dual", tok, prompt_form="cloze")
    eos = tok.eos_token
    for it, ex in zip(mmlu, examples):
        mode = it.preferred_mode
        marker = "[General_mode]" if mode == "general" else "[Personalized_mode]"
        answer = option_texts(it)[it.traces[mode].answer]
        assert ex["prompt"] == cloze_question(question_stem(it), it.persona) + "\n"
        assert ex["completion"] == f"{marker}\nAnswer: {answer}{eos}"
    assert all("<answer>" in ex["completion"] for ex in examples[len(mmlu):])  # PersonaBench: the chat form
    assert build_examples(mmlu, "dual", tok) != examples[: len(mmlu)]  # the default is the chat form
    with pytest.raises(ValueError, match="prompt_form: expected one of chat, cloze"):
        build_examples(mmlu, "dual", tok, prompt_form="plain")


def test_a_set_aside_general_mode_reads_the_question_without_its_persona(tiny_dir, mmlu_cond):
    eng = Engine.load(str(tiny_dir), protocol="modes")
    items = [it for it in read_items(mmlu_cond / "test.jsonl") if it.persona][:5]
    aside, info = choice_runs(eng, items, "cloze", general_context="set-aside")
    given = choice_runs(eng, items, "cloze")[0]
    bare = choice_runs(eng, items, "cloze", drop_persona=True)[0]
    assert info["general_context"] == "set-aside"
    for i in range(len(items)):
        assert aside["general"][i].option_probs == pytest.approx(bare["general"][i].option_probs, abs=1e-5)
        assert aside["personalized"][i].option_probs == pytest.approx(given["personalized"][i].option_probs, abs=1e-5)
        assert aside["auto"][i].p_mode == pytest.approx(given["auto"][i].p_mode, abs=1e-5)  # chosen on the persona
    assert any(a.option_probs != g.option_probs for a, g in zip(aside["general"], given["general"]))
    only = choice_runs(eng, items, "cloze", mode="general", general_context="set-aside")[0]["auto"]
    assert [p.option_probs for p in only] == [p.option_probs for p in aside["general"]]
    assert only[0].p_mode == pytest.approx(given["auto"][0].p_mode, abs=1e-5)
    with pytest.raises(ValueError, match="set-aside: needs a mode model"):
        choice_runs(Engine.load(str(tiny_dir), protocol="plain"), items, "cloze", general_context="set-aside")


def test_the_cloze_reward_reads_the_option_a_sampled_reply_names():
    from personadual.rl.rewards import cloze_accuracy_reward, cloze_answer

    texts = {"A": "glue them on with mascara.", "B": "put eyelash glue on the fake eyelashes", "C": "glue"}
    assert cloze_answer("[General_mode]\nAnswer: Glue them on with  mascara", texts) == "A"
    assert cloze_answer("\nAnswer: put eyelash glue on the fake eyelashes and wait", texts) == "B"
    assert cloze_answer("Answer: glue it all", texts) == "C"  # the longest option text it starts with
    assert cloze_answer("Answer: tape", texts) is None and cloze_answer("no answer line", texts) is None
    rows = json.dumps(texts)
    assert cloze_accuracy_reward(["Answer: glue them on with mascara.", "Answer: tape", "x"], gold=["A", "A", "A"],
                                 option_texts=[rows, rows, ""]) == [1.0, 0.0, None]


def test_rl_rows_in_the_cloze_form_carry_the_prompt_and_option_texts(tiny_dir, mmlu_cond, bench_dir):
    from transformers import AutoTokenizer

    from personadual.rl.train import rows_for

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    items = read_items(mmlu_cond / "test.jsonl")[:3] + read_items(bench_dir / "test.jsonl")[:2]
    rows = rows_for(items, tok, prompt_form="cloze")
    for it, row in zip(items[:3], rows):
        assert row["prompt"] == cloze_question(question_stem(it), it.persona) + "\n"
        assert json.loads(row["option_texts"]) == option_texts(it)
        assert row["prompt_set_aside"] == (cloze_question(question_stem(it), None) + "\n" if it.persona else "")
    assert all(json.loads(r["option_texts"]) == {} and "<answer>" not in r["prompt"] for r in rows[3:])
    assert rows_for(items[:1], tok)[0]["prompt"] != rows[0]["prompt"]  # chat is the default


def test_option_rollouts_score_each_option_as_the_cloze_choice_protocol_does(sft_model, mmlu_cond):
    from personadual.eval.choice import mode_scores, render_choice_prompt
    from personadual.rl.option_rollouts import answer_offset, draw_options, option_replies, option_scores

    eng = Engine.load(str(sft_model))
    tok = eng.tokenizer
    items = read_items(mmlu_cond / "test.jsonl")[:4]
    prompts = prompt_ids(tok, [render_choice_prompt(eng, it, "cloze", it.persona) for it in items])
    _, _, by_mode = mode_scores(eng, items, prompts, ["general", "personalized"], forms=["cloze"] * len(items))
    for m, marker in (("general", "[General_mode]"), ("personalized", "[Personalized_mode]")):
        marker_id = tok.convert_tokens_to_ids(marker)
        for it, p, expected in zip(items, prompts, by_mode[m]):
            texts = list(option_texts(it).values())
            replies = option_replies(tok, marker, texts)
            start = answer_offset(tok, marker, replies)
            assert tok.decode(replies[0][:start]).strip() == "Answer:"
            scores = option_scores(eng.model, [p + [marker_id]] * len(texts), replies, [start] * len(texts),
                                   [len(t) for t in texts], tok.pad_token_id, batch_size=3)
            assert scores.tolist() == pytest.approx(list(expected.values()), abs=1e-4)
            assert draw_options([scores], 0.0) == [int(scores.argmax())]  # T = 0: the evaluation's answer
    lopsided = torch.tensor([0.0, -50.0, -50.0])
    torch.manual_seed(0)
    assert draw_options([lopsided] * 20, 1.0) == [0] * 20
    assert set(draw_options([torch.zeros(3)] * 60, 1.0)) == {0, 1, 2}  # flat scores: every option is drawn


def test_dualgrpo_cloze_rollouts_answer_with_an_option_and_are_rewarded(sft_model, mmlu_cond, tmp_path):
    from personadual.config import ConfigError, load_config
    from personadual.rl.config import RLRunConfig
    from personadual.rl.rewards import cloze_answer
    from personadual.rl.train import build_trainer

    base = [f"model={sft_model}", f"data={mmlu_cond / 'test.jsonl'}", f"output_dir={tmp_path}", "prompt_form=cloze",
            "rewards={cloze_accuracy: 1.0}", "num_generations=4", "per_device_train_batch_size=8", "max_steps=1",
            "eval_limit=0", "threads=1", "temperature=1.0", "general_context=set-aside"]
    with pytest.raises(ConfigError, match="needs prompt_form: cloze"):
        load_config(RLRunConfig, None, [*base[:3], "cloze_rollouts=options"])
    trainer = build_trainer(load_config(RLRunConfig, None, [*base, "cloze_rollouts=options"]))
    trainer.model.train()
    rows = [dict(trainer.train_dataset[i]) for i in range(2)]
    inputs = [dict(r) for r in rows for _ in range(4)]
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(inputs)
    tok = trainer.processing_class
    for i, row in enumerate(inputs):
        ids = out["completion_ids"][i][out["completion_mask"][i].bool()].tolist()
        assert ids[0] == trainer.marker_ids[(i % 4) // 2] and ids[-1] == tok.eos_token_id
        texts = json.loads(row["option_texts"])
        said = cloze_answer(tok.decode(ids, skip_special_tokens=True), texts)
        assert said in texts  # every rollout names one of the item's options
        assert trainer._rewards_per_func[i].item() == float(said == row["gold"])
    assert trainer._option_texts is None

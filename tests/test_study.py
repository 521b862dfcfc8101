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

import pytest

from personadual import modes
from personadual.modes import DEFAULT_MODES, ModeSet, format_response, parse

GOOD = '[General_mode]\nA 31 ; B 27 keep A\n<answer> {"answer": "B"} </answer>'


def test_well_formed_round_trip():
    for mode in DEFAULT_MODES.names:
        p = parse(format_response(mode, "some reasoning .", "C"))
        assert (p.mode, p.answer, p.well_formed, p.reason) == (mode, "C", True, "")
        assert p.reasoning == "some reasoning ."


def test_end_of_turn_after_answer_is_fine():
    assert parse(GOOD + "<|im_end|>").well_formed


@pytest.mark.parametrize(
    "text, mode, answer, reason",
    [
        ("[General_mode]\nA 31 ; B 27 keep A\n<answer> {\"ans", "general", None, "truncated answer block"),
        ("[General_mode]\nA 31", "general", None, "no answer block"),
        ("[General_mode]\n[Personalized_mode]\n<answer> {\"answer\": \"B\"} </answer>", "general", "B", "extra mode marker"),
        ("A 31 ; B\n<answer> {\"answer\": \"B\"} </answer>", None, "B", "no mode marker"),
        ("[General_mode]\nx\n<answer> B </answer>", "general", None, "not valid JSON"),
        ("[General_mode]\nx\n<answer> {\"choice\": \"B\"} </answer>", "general", None, 'no "answer" key'),
        ("[General_mode]\nx\n<answer> {\"answer\": [1]} </answer>", "general", None, "not a string"),
        ("[General_mode]\nx\n<answer> {\"answer\": \"B\"} </answer> and more words", "general", "B", "extra text"),
        ("[General_mode]\nx\n<answer> {\"answer\": \"B\"} </answer><answer> {\"answer\": \"C\"} </answer>", "general", "B", "2 answer blocks"),
        ("", None, None, "no mode marker"),
    ],
)
def test_malformed_never_raises(text, mode, answer, reason):
    p = parse(text)
    assert not p.well_formed
    assert p.mode == mode and p.answer == answer
    assert reason in p.reason or any(reason in x for x in p.problems)


def test_non_string_input_does_not_raise():
    p = parse(None)  # type: ignore[arg-type]
    assert not p.well_formed and "not str" in p.reason


def test_numeric_answer_is_read_as_string():
    assert parse('[General_mode]\nx\n<answer> {"answer": 7} </answer>').answer == "7"


def test_modeset_generalises_to_three_modes():
    three = ModeSet.from_dict({"general": "[G]", "personalized": "[P]", "cautious": "[C]"})
    p = parse('[C]\nthink\n<answer> {"answer": "A"} </answer>', three)
    assert p.well_formed and p.mode == "cautious" and three.index("cautious") == 2


@pytest.mark.parametrize("spec", [{"a": "[X]"}, {"a": "[X]", "b": "[X]"}, {"auto": "[A]", "b": "[B]"}, {"a": "[X", "b": "[X]"}])
def test_modeset_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        ModeSet.from_dict(spec)


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown mode 'creative'"):
        DEFAULT_MODES.get("creative")


def test_render_messages_persona_optional():
    assert modes.render_messages("q ?") == [{"role": "user", "content": "q ?"}]
    msgs = modes.render_messages("q ?", "a chef", system_prompt="be brief")
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1]["content"] == "I am a chef, my question is: q ?"


def test_forced_prefix():
    assert modes.forced_prefix("auto") == ""
    assert modes.forced_prefix("personalized") == "[Personalized_mode]\n"
    assert DEFAULT_MODES.markers == ["[General_mode]", "[Personalized_mode]"]

"""Evaluation protocols as objects: chosen once, each reporting its own metric keys, and one metric
function behind every number, whether eval or a training check prints it."""

import json
from types import SimpleNamespace

import pytest

from personadual.eval.predictions import Prediction
from personadual.eval.protocols import (ChoiceProtocol, ModesProtocol, PlainProtocol, Protocol, RunSettings,
                                        load_protocol)

MODE_KEYS = ("mode_share", "preferred_mode_agreement")


def pred(i, cond, answer, mode=None, well_formed=True):
    return Prediction(id=f"q{i}-{cond}", base_id=f"q{i}", family="compare", kind="objective", condition=cond, gold="A",
                      preferred_mode=None, requested_mode="auto", mode=mode, answer=answer, correct=answer == "A",
                      well_formed=well_formed, reason="", p_mode={}, text="")


def fake_engine(modes: bool, scores: bool = True):
    """What the protocols read of an engine: its markers (or none), and whether it scores options."""
    names = ["general", "personalized"] if modes else []
    engine = SimpleNamespace(modes=object() if modes else None, mode_names=names, chat_template_kwargs={})
    if scores:
        engine.scorer = None
    return engine


class CannedProtocol(Protocol):
    """A protocol of its own: evaluate() must run it as given, asking no string what to do."""

    name, carries_modes, reads_free_text = "canned", False, True

    def run(self, items, settings, progress=None):
        self.asked = settings
        return {"auto": [pred(i, it.condition, "A" if i % 2 else None, well_formed=bool(i % 2))
                         for i, it in enumerate(items)]}, {"canned": {"items": len(items)}}


def test_evaluate_runs_a_protocol_object_as_given_and_reads_no_protocol_string(bench_dir, tmp_path, monkeypatch):
    from personadual.eval import run

    def no_strings(*args, **kwargs):
        raise AssertionError("a protocol object was given: no protocol name may be read")

    monkeypatch.setattr(run, "open_protocol", no_strings)
    protocol = CannedProtocol(SimpleNamespace(chat_template_kwargs={"x": 1}))
    m = run.evaluate("runs/some/model", str(bench_dir), str(tmp_path / "ev"), protocol=protocol, limit=6,
                     choice_form="no-such-form", general_context="no-such-context", backend="no-such-backend")
    assert protocol.asked == RunSettings()  # evaluate()'s defaults, whatever the strings beside the object say
    assert m["protocol"] == "canned" and m["unreadable"]["n"] == 3 and "mode_share" not in m
    assert list(m)[-7:] == ["model", "data", "requested_mode", "drop_persona", "chat_template_kwargs", "name", "canned"]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text()) == m
    assert "unreadable answers: 3" in (tmp_path / "ev" / "report.md").read_text()


def test_each_protocol_reports_its_own_metric_keys():
    runs = {"auto": [pred(0, "none", "A", "general"), pred(1, "none", None, "general", well_formed=False)]}
    plain = PlainProtocol().metrics(runs, n_boot=10)
    assert plain["protocol"] == "plain" and plain["unreadable"]["n"] == 1 and not set(MODE_KEYS) & set(plain)
    modes = ModesProtocol(mode_names=["general", "personalized"]).metrics(runs, n_boot=10)
    assert modes["protocol"] == "modes" and "unreadable" not in modes and set(MODE_KEYS) <= set(modes)
    on_plain = ChoiceProtocol(fake_engine(modes=False)).metrics(runs, n_boot=10)
    on_modes = ChoiceProtocol(fake_engine(modes=True), "cloze").metrics(runs, n_boot=10)
    assert on_plain["protocol"] == on_modes["protocol"] == "choice"
    assert "unreadable" not in on_plain and not set(MODE_KEYS) & set(on_plain)  # a scored answer is always read
    assert set(MODE_KEYS) <= set(on_modes) and "mode_share" in on_modes["per_family"]["compare"]


def test_load_protocol_chooses_once_from_the_name_and_the_engine():
    with_markers, without = fake_engine(modes=True), fake_engine(modes=False)
    assert type(load_protocol(with_markers)) is ModesProtocol and type(load_protocol(without)) is PlainProtocol
    assert type(load_protocol(with_markers, "modes")) is ModesProtocol
    assert type(load_protocol(without, "plain")) is PlainProtocol
    choice = load_protocol(with_markers, "choice", form="cloze", general_context="set-aside")
    assert (type(choice), choice.form, choice.general_context, choice.carries_modes) == (ChoiceProtocol, "cloze",
                                                                                         "set-aside", True)
    assert load_protocol(with_markers).mode_names == ["general", "personalized"]
    with pytest.raises(ValueError, match="--protocol plain"):
        load_protocol(without, "modes")
    with pytest.raises(ValueError, match="without mode markers"):
        load_protocol(with_markers, "plain")
    with pytest.raises(ValueError, match="--choice-form"):
        load_protocol(without, "choice", form="essay")
    with pytest.raises(ValueError, match="HF engine"):
        load_protocol(fake_engine(modes=False, scores=False), "choice")
    with pytest.raises(ValueError, match="applies to --protocol choice"):
        load_protocol(with_markers, "modes", general_context="set-aside")
    with pytest.raises(ValueError, match="protocol: expected one of"):
        load_protocol(with_markers, "chat")
    with pytest.raises(ValueError, match="cannot force mode 'general'"):
        PlainProtocol().check(RunSettings(mode="general"))


def test_a_generating_protocol_says_what_an_endpoint_is_asked():
    modes = ModesProtocol(mode_names=["general", "personalized"])
    assert modes.runs_to_ask(RunSettings()) == ["general", "personalized"]
    assert modes.runs_to_ask(RunSettings(forced=False)) == ["auto"]
    assert modes.runs_to_ask(RunSettings(mode="personalized")) == ["personalized"]
    assert modes.request_fields("general") == {"mode": "general", "include_reasoning": True}
    assert PlainProtocol().runs_to_ask(RunSettings()) == ["auto"] and PlainProtocol().request_fields("auto") == {}
    one = {"personalized": [pred(0, "none", "A", "personalized")]}
    assert modes.assemble(one) == {"auto": one["personalized"]}  # one forced mode asked: reported as the run


def test_eval_and_the_training_checks_call_the_same_metric_functions():
    """The SFT separation callback, the RL end-of-run check and eval's metrics.json share each function object."""
    from personadual.eval import checks, metrics
    from personadual.eval.metrics import summary
    from personadual.sft import separation as sft_callback

    assert sft_callback.separation is summary.separation is metrics.separation
    assert sft_callback.rounded_accuracy_by_condition is metrics.rounded_accuracy_by_condition
    assert checks.hacc is summary.hacc is metrics.hacc
    assert checks.balanced_accuracy is summary.balanced_accuracy is metrics.balanced_accuracy
    assert checks.quick_summary is metrics.quick_summary
    assert checks.runs_by_mode.__module__ == "personadual.eval.generation"

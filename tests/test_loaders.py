"""Real-source loaders on tiny hand-written fixtures in each source's own format (no network)."""

import json
from pathlib import Path

import pytest

from personadual.data.loaders import ALIGNX_DIMENSIONS, SOURCES, attach_personas, load_personas, load_source
from personadual.data.schema import DataError, Item

FIX = Path(__file__).parent / "fixtures" / "sources"


@pytest.fixture
def load(tmp_path):
    """load_source with a private `datasets` cache, so tests never touch the user's cache."""
    return lambda source, name, **kw: load_source(source, str(FIX / name), cache_dir=str(tmp_path / "c"), **kw)


def _alignx_row(**kw):
    row = json.loads((FIX / "alignx.jsonl").read_text().splitlines()[0])
    return {**row, **kw}


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_mmlu_jsonl(load):
    items = load("mmlu", "mmlu.jsonl")
    assert [it.id for it in items] == ["mmlu-000000", "mmlu-000001", "mmlu-000002"]
    first = items[0]
    assert first.question == "What is the SI unit of electric charge?\nA. Ampere\nB. Coulomb\nC. Volt\nD. Ohm"
    assert (first.gold, first.options, first.family) == ("B", ["A", "B", "C", "D"], "mmlu:high_school_physics")
    assert (first.kind, first.condition, first.persona, first.traces) == ("objective", "none", None, {})
    assert (first.preferred_mode, first.source, first.meta["subject"]) == ("general", "mmlu", "high_school_physics")
    assert items[2].options == ["A", "B"] and items[2].gold == "B"


def test_mmlu_original_headerless_csv(load):
    items = load("mmlu", "astronomy_test.csv")
    assert [it.gold for it in items] == ["C", "B"]
    assert {it.family for it in items} == {"mmlu:astronomy"}
    assert items[1].question.endswith("A. 7\nB. 8\nC. 9\nD. 10")  # numbers stay option text


def test_bad_rows_reported_with_file_row_and_good_rows_kept(load):
    with pytest.raises(DataError) as exc:
        load("mmlu", "mmlu_bad.jsonl")
    err = exc.value
    assert len(err.errors) == 2
    assert err.errors[0].endswith("mmlu_bad.jsonl:row 2: answer: 7 is not an index or letter of the 4 choices")
    assert "mmlu_bad.jsonl:row 3: question:" in err.errors[1]
    assert [it.id for it in err.items] == ["mmlu-000000", "mmlu-000003"]
    assert [it.id for it in load("mmlu", "mmlu_bad.jsonl", on_error="skip")] == ["mmlu-000000", "mmlu-000003"]


def test_invalid_json_line_is_a_row_error(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text((FIX / "mmlu.jsonl").read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(DataError) as exc:
        load_source("mmlu", str(path), cache_dir=str(tmp_path / "c"))
    assert exc.value.errors == [f"{path}:row 2: (row): not valid JSON (Expecting property name enclosed in double quotes at column 2)"]
    assert len(exc.value.items) == 1


def test_flan_keeps_only_rows_whose_target_is_an_option(load):
    report = {}
    items = load("flan", "flan.jsonl", report=report)
    assert [it.id for it in items] == ["flan-000000", "flan-000001", "flan-000004"]
    assert report["skipped"] == {"no options block in inputs": 1, "target is not exactly one of the options": 1}
    assert report["errors"] == 0 and report["rows"] == 5
    snli, arc, cosmos = items
    assert snli.question.endswith("Does the premise entail the hypothesis?\nA. yes\nB. it is not possible to tell\nC. no")
    assert (snli.gold, snli.family, snli.meta["template_type"]) == ("A", "flan:snli:1.1.0", "zs_opt")
    assert arc.gold == "B" and "A. Atlantic\nB. Pacific\nC. Indian" in arc.question  # target "(B)." names a marker
    assert cosmos.gold == "B" and cosmos.question.endswith("B. The cat sat\nWhat did the cat do?")


def test_flan_source_target_columns(tmp_path):
    path = _write_jsonl(tmp_path / "flan_v2.jsonl", [
        {"source": "Is water wet?\nOptions:\n- yes\n- no", "target": "no", "task_name": "boolq"}])
    (item,) = load_source("flan", path, cache_dir=str(tmp_path / "c"))
    assert (item.gold, item.family) == ("B", "flan:boolq")


def test_ultramedical_multiple_choice_only(load):
    report = {}
    items = load("ultramedical", "ultramedical.json", report=report)
    assert [it.id for it in items] == ["ultramedical-000000", "ultramedical-000001", "ultramedical-000003"]
    assert [it.gold for it in items] == ["B", "A", "C"]  # the last from the reply: answer field is null
    assert report["skipped"] == {"open-ended (not multiple choice)": 1, "no recoverable gold letter": 1}
    medqa = items[0]
    assert medqa.family == "ultramedical:MedQA" and medqa.meta == {"row": 0, "id": "MedQA,101", "type": "Exam", "subset": "MedQA"}
    assert medqa.question.endswith("C. Left circumflex artery\nD. Left main coronary artery")
    assert items[1].options == ["A", "B", "C"]


def test_alignx_personalized_items(load):
    report = {}
    items = load("alignx", "alignx.jsonl", report=report)
    assert report["skipped"] == {"no persona signal (neutral dimensions, no demographic text)": 1}
    first = items[0]
    assert (first.kind, first.condition, first.family, first.source) == ("personalized", "personalized", "alignx", "alignx")
    assert first.preferred_mode == "personalized" and first.persona_pull == first.gold
    assert first.persona == "someone with these traits and preferences: concise communication style; likes science; dislikes gaming"
    chosen = "Quick veggie stir-fry: wok, garlic, soy, done in 15."
    assert f"{first.gold}. {chosen}" in first.question
    assert "Which of these two responses would I prefer?" in first.question


def test_alignx_thresholds(tmp_path):
    vec = [0.5] * 90
    vec[47], vec[52], vec[73] = 0.72, 0.3, 0.55  # likes science, dislikes gaming, a weak lean to humor
    path = _write_jsonl(tmp_path / "a.jsonl", [_alignx_row(**{"Preference Direction": vec})])
    kw = {"cache_dir": str(tmp_path / "c")}
    assert load_source("alignx", path, **kw)[0].persona.endswith("likes science; dislikes gaming")
    strict = load_source("alignx", path, like_threshold=0.75, dislike_threshold=0.25, **kw)[0]
    assert strict.persona.endswith(": likes science")  # nothing past the thresholds: the strongest lean
    loose = load_source("alignx", path, like_threshold=0.55, **kw)[0]
    assert loose.persona.endswith("likes science; dislikes gaming; likes humor")
    with pytest.raises(ValueError, match="dislike_threshold < like_threshold"):
        load_source("alignx", path, like_threshold=0.3, **kw)


def test_alignx_named_vector_history_and_demographics(tmp_path):
    kw = {"cache_dir": str(tmp_path / "c")}
    named = _write_jsonl(tmp_path / "named.jsonl", [_alignx_row(**{"Preference Direction": {"brevity": 0.9, "jargon": 0.1}})])
    assert load_source("alignx", named, **kw)[0].persona.endswith("likes brevity; dislikes jargon")
    hist = load_source("alignx", str(FIX / "alignx.jsonl"), profile="history", demographics=True, limit=1, **kw)[0]
    assert "likes digital technology" in hist.persona and "concise communication style" in hist.persona
    assert hist.persona.endswith(". a busy software engineer in her thirties who cooks on weeknights")
    demo = load_source("alignx", str(FIX / "alignx.jsonl"), profile="demographic", **kw)
    assert [it.persona for it in demo] == ["a busy software engineer in her thirties who cooks on weeknights",
                                           "a retired physics teacher who enjoys long reads"]  # row 3: empty, skipped
    assert len(load_source("alignx", str(FIX / "alignx.jsonl"), demographics=True, **kw)) == 2  # empty text: omitted
    assert ALIGNX_DIMENSIONS[16] == ("concise communication style", "detailed communication style")


def test_alignx_bad_vector_is_a_row_error(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [_alignx_row(), _alignx_row(**{"Preference Direction": [1, 0, 1]})])
    with pytest.raises(DataError) as exc:
        load_source("alignx", path, cache_dir=str(tmp_path / "c"))
    assert exc.value.errors[0].startswith(f"{path}:row 2: Preference Direction: expected 90 numbers")
    assert len(exc.value.items) == 1


def test_alignx_option_order_is_seeded(tmp_path):
    rows = [_alignx_row(prompt=f"question {i}") for i in range(24)]
    path = _write_jsonl(tmp_path / "many.jsonl", rows)
    kw = {"cache_dir": str(tmp_path / "c")}
    golds = lambda seed: [it.gold for it in load_source("alignx", path, seed=seed, **kw)]  # noqa: E731
    assert golds(0) == golds(0)
    assert set(golds(0)) == {"A", "B"} and golds(0) != golds(1)
    assert golds(0)[:5] == [it.gold for it in load_source("alignx", path, seed=0, limit=5, **kw)]


def test_load_personas(tmp_path):
    kw = {"cache_dir": str(tmp_path / "c")}
    personas = load_personas(str(FIX / "personahub_persona.jsonl"), **kw)
    assert personas == ["a Political Analyst specialized in El Salvador's political landscape",
                        "a marine biologist who studies coral bleaching",
                        "an amateur astronomer who photographs nebulae from her backyard"]  # distinct, prompt-ready
    assert load_personas(str(FIX / "personahub_instruction.jsonl"), limit=1, **kw) == [
        "a retired chef who writes about regional French cooking"]


def test_attach_personas(load):
    items = load("mmlu", "mmlu.jsonl")
    personas = ["a marine biologist", "a jazz drummer"]
    out = attach_personas(items, personas, seed=3)
    assert [it.condition for it in out] == ["irrelevant"] * 3
    assert all(it.persona in personas and it.preferred_mode == "general" for it in out)
    assert all(it.base_id == it.id and it.meta["persona_source"] == "personahub" for it in out)
    assert [it.persona for it in out] == [it.persona for it in attach_personas(items, personas, seed=3)]
    assert items[0].condition == "none"  # inputs are not modified
    assert attach_personas(items, [], seed=3) == items
    kept = attach_personas(items, personas, seed=3, aligned_share=1.0)
    assert [it.condition for it in kept] == ["none"] * 3 and kept[0].meta["persona_slot"] == "aligned"
    paired = attach_personas(items, personas, seed=3, keep_original=True)
    assert [it.id for it in paired[:2]] == ["mmlu-000000", "mmlu-000000-irrelevant"]
    assert all(isinstance(Item.model_validate(it.model_dump()), Item) for it in paired)


def test_attach_leaves_personalized_items_alone(load):
    items = load("alignx", "alignx.jsonl")
    assert attach_personas(items, ["a jazz drummer"]) == items


def test_load_source_with_personas(load):
    items = load("mmlu", "mmlu.jsonl", personas=["a jazz drummer"], seed=1)
    assert {(it.condition, it.persona) for it in items} == {("irrelevant", "a jazz drummer")}


def test_unknown_source_and_options(load):
    with pytest.raises(ValueError, match="known: alignx, flan, mmlu, ultramedical"):
        load_source("nope", str(FIX / "mmlu.jsonl"))
    with pytest.raises(ValueError, match="load_personas"):
        load_source("personahub", str(FIX / "personahub_persona.jsonl"))
    with pytest.raises(ValueError, match="unknown option"):
        load("mmlu", "mmlu.jsonl", like_threshold=0.5)
    assert set(SOURCES) == {"mmlu", "flan", "ultramedical", "alignx"}


def test_exactly_one_of_path_and_hf_name():
    with pytest.raises(ValueError, match="exactly one"):
        load_source("mmlu")
    with pytest.raises(ValueError, match="exactly one"):
        load_source("mmlu", str(FIX / "mmlu.jsonl"), hf_name="cais/mmlu")
    with pytest.raises(FileNotFoundError):
        load_source("mmlu", str(FIX / "missing.jsonl"))


def test_shuffle_samples_rows_deterministically(load):
    picked = [it.id for it in load("flan", "flan.jsonl", shuffle=True, limit=2, seed=5)]
    assert picked == [it.id for it in load("flan", "flan.jsonl", shuffle=True, limit=2, seed=5)]
    assert set(picked) <= {"flan-000000", "flan-000001", "flan-000004"}  # ids keep the file row


def test_cli_passes_the_hub_config(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import personadual.data.loaders as loaders
    from personadual.cli import app

    seen = {}
    monkeypatch.setattr(loaders, "load_source", lambda source, path, **kw: seen.update(source=source, **kw) or [])
    r = CliRunner().invoke(app, ["data", "load", "mmlu", "--out", str(tmp_path / "o.jsonl"), "--hf-name", "cais/mmlu",
                                 "--hf-config", "all", "--split", "test"])
    assert r.exit_code == 0, r.output
    assert (seen["source"], seen["hf_name"], seen["hf_config"], seen["split"]) == ("mmlu", "cais/mmlu", "all", "test")

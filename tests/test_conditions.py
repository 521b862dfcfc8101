"""The persona-condition grid for real multiple-choice items, on the loaders' fixtures (no network)."""

import json
import re
from pathlib import Path

import pytest

from personadual.data.conditions import (AMBIGUOUS, HELPFUL, IRRELEVANT, MISALIGNED, ConditionsConfig,
                                         build_conditions, fill_aligned_slots, stats, subject_of, write_conditions)
from personadual.data.loaders import attach_personas, load_personas, load_source
from personadual.data.options import option_texts
from personadual.data.schema import Item, read_items

FIX = Path(__file__).parent / "fixtures" / "sources"
MC_SOURCES = {"mmlu": "mmlu.jsonl", "ultramedical": "ultramedical.json", "flan": "flan.jsonl"}
PAIRED = {"none", "irrelevant", "misaligned", "helpful"}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """source -> its fixture items, read once with a private `datasets` cache."""
    cache = str(tmp_path_factory.mktemp("cache"))
    out = {name: load_source(name, str(FIX / file), cache_dir=cache) for name, file in MC_SOURCES.items()}
    out["alignx"] = load_source("alignx", str(FIX / "alignx.jsonl"), cache_dir=cache)
    return out


@pytest.fixture(scope="module")
def many(loaded):
    """Enough multiple-choice items for every kind and split to show up: fixture items under new ids."""
    base = [it for name in MC_SOURCES for it in loaded[name]]
    return [it.model_copy(update={"id": f"{it.id}-copy{i:03d}"}) for i in range(40) for it in base]


def _by_base(items):
    out = {}
    for it in items:
        out.setdefault(it.base_id, {})[it.condition] = it
    return out


def _names(persona: str, item: Item, letter: str, kind: str) -> bool:
    """Does the persona name option ``letter`` (by quoted text, or as a bare letter for letter kinds)?"""
    if kind == "letter":
        return re.search(rf"\b{letter}\b", persona) is not None
    text = option_texts(item).get(letter)
    return (f'"{text}"' in persona) if text else (f"option {letter}" in persona)


@pytest.mark.parametrize("source", sorted(MC_SOURCES))
def test_every_test_question_appears_under_every_paired_condition(loaded, source):
    items = loaded[source]
    assert len(items) == 3
    out = build_conditions(items, ConditionsConfig(seed=0))
    assert set(out) == {"test"}
    grid = _by_base(out["test"])
    assert set(grid) == {it.id for it in items}
    for src in items:
        variants = grid[src.id]
        assert PAIRED <= set(variants) <= PAIRED | {"ambiguous"}
        for condition, it in variants.items():
            assert it.id == f"{src.id}-{condition}" and it.split == "test"
            assert (it.question, it.options, it.gold, it.family) == (src.question, src.options, src.gold, src.family)
            assert it.meta["row"] == src.meta["row"]  # the source's meta rides along
            assert it.traces == {} and it.preferred_mode == ("personalized" if condition == "helpful" else "general")
            assert (it.persona is None) == (condition == "none")
        assert variants["none"].persona_pull is None and variants["irrelevant"].persona_pull is None


def test_misaligned_points_to_a_wrong_option_and_helpful_to_the_gold_one(many):
    out = build_conditions(many, ConditionsConfig(seed=3))["test"]
    seen = {"misaligned": set(), "helpful": set(), "ambiguous": set()}
    for it in out:
        kind = it.meta["persona_kind"]
        if it.condition == "misaligned":
            assert it.persona_pull != it.gold and it.persona_pull in it.options
            assert _names(it.persona, it, it.persona_pull, kind) and not _names(it.persona, it, it.gold, kind)
        elif it.condition == "helpful":
            assert it.persona_pull == it.gold and _names(it.persona, it, it.gold, kind)
        elif it.condition == "ambiguous":
            other = next(o for o in it.options if o != it.gold and _names(it.persona, it, o, kind))
            assert _names(it.persona, it, it.gold, kind)
            if kind != "letter":  # the pull is the option named first
                ref = lambda o: f'"{option_texts(it)[o]}"'  # noqa: E731
                second = it.gold if it.persona_pull == other else other
                assert it.persona.index(ref(it.persona_pull)) < it.persona.index(ref(second))
        if it.condition in seen:
            seen[it.condition].add(kind)
            assert it.meta["persona_source"] == "builtin"
    assert seen == {"misaligned": set(MISALIGNED), "helpful": set(HELPFUL), "ambiguous": set(AMBIGUOUS)}
    props = stats({"test": out})["properties"]["test"]
    assert props["misaligned_pull_not_gold"] == 1.0 and props["helpful_pull_gold"] == 1.0
    assert 0.3 < props["ambiguous_pull_gold"] < 0.7  # gold is named first about half the time


def test_train_and_test_never_share_a_phrasing(many):
    out = build_conditions(many, ConditionsConfig(seed=0, splits={"train": 0.5, "test": 0.5}))
    assert 0.35 < len({it.base_id for it in out["train"]}) / len(many) < 0.65
    assert all(len(conds) == 1 for conds in _by_base(out["train"]).values())  # one condition per train base
    assert all(PAIRED <= set(conds) for conds in _by_base(out["test"]).values())
    used = {split: {it.meta["persona_template"] for it in items if it.persona} for split, items in out.items()}
    texts = {split: {it.persona for it in items if it.persona} for split, items in out.items()}
    assert len(used["train"]) > 20 and len(used["test"]) > 20
    assert not used["train"] & used["test"] and not texts["train"] & texts["test"]
    test_irrelevant = {it.meta["persona_template"] for it in out["test"] if it.condition == "irrelevant"}
    assert test_irrelevant <= set(IRRELEVANT["heldout"])
    assert stats(out)["properties"]["test"]["phrasings_shared_with_train"] == 0
    for pool in (IRRELEVANT, *(kinds[k] for kinds in (MISALIGNED, HELPFUL, AMBIGUOUS) for k in kinds)):
        assert not set(pool["train"]) & set(pool["heldout"])
    assert len(IRRELEVANT["train"]) >= 30 and len(IRRELEVANT["heldout"]) >= 15


def test_splits_depend_on_seed_and_id_not_on_input_order(many):
    cfg = ConditionsConfig(seed=0, splits={"train": 0.4, "val": 0.2, "test": 0.4})
    forward, backward = build_conditions(many, cfg), build_conditions(many[::-1], cfg)
    dump = lambda items: sorted(it.model_dump_json() for it in items)  # noqa: E731
    assert {s: dump(v) for s, v in forward.items()} == {s: dump(v) for s, v in backward.items()}
    assert all(forward[s] for s in ("train", "val", "test"))


def test_same_seed_same_bytes_other_seed_other_bytes(many, tmp_path):
    cfg = ConditionsConfig(seed=7, splits={"train": 0.5, "test": 0.5})
    for name in ("a", "b"):
        write_conditions(many, cfg, tmp_path / name)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["config.json", "stats.json", "test.jsonl", "train.jsonl"]
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    write_conditions(many, ConditionsConfig(seed=8, splits={"train": 0.5, "test": 0.5}), tmp_path / "c")
    assert (tmp_path / "c" / "test.jsonl").read_bytes() != (tmp_path / "a" / "test.jsonl").read_bytes()
    def personas(seed):
        return [it.persona for it in build_conditions(many, ConditionsConfig(seed=seed, ambiguous_every=0))["test"]]
    assert personas(7) != personas(8)  # the persona draws follow the seed too, not only the split
    write_conditions(many, ConditionsConfig(seed=7), tmp_path / "a")  # a rerun with test only
    assert not (tmp_path / "a" / "train.jsonl").exists()  # no stale split left behind
    assert json.loads((tmp_path / "a" / "config.json").read_text())["splits"] == {"test": 1.0}


def test_personalized_and_persona_items_pass_through(loaded):
    alignx = loaded["alignx"]
    with_persona = attach_personas(loaded["mmlu"], ["a sailor who knits"], seed=0)
    out = build_conditions(alignx + with_persona, ConditionsConfig(seed=0))["test"]
    assert [it.model_copy(update={"split": None}) for it in out] == alignx + with_persona
    assert all(it.split == "test" for it in out)


def test_personahub_personas_replace_the_builtin_irrelevant_ones(many):
    personas = load_personas(str(FIX / "personahub_persona.jsonl"))
    out = build_conditions(many, ConditionsConfig(seed=0, splits={"train": 0.5, "test": 0.5}), personas)
    irrelevant = {s: {it.persona for it in items if it.condition == "irrelevant"} for s, items in out.items()}
    assert irrelevant["train"] and irrelevant["test"]
    assert irrelevant["train"] | irrelevant["test"] == set(personas)
    assert not irrelevant["train"] & irrelevant["test"]
    assert all(it.meta["persona_source"] == "personahub" for items in out.values() for it in items
               if it.condition == "irrelevant")
    assert all(it.meta["persona_source"] == "builtin" for items in out.values() for it in items
               if it.condition == "misaligned")


def test_ambiguous_every(many):
    def ambiguous_share(k):
        test = build_conditions(many, ConditionsConfig(seed=0, ambiguous_every=k))["test"]
        return sum(it.condition == "ambiguous" for it in test) / len(many)
    assert ambiguous_share(1) == 1.0 and ambiguous_share(0) == 0.0
    assert 0.25 < ambiguous_share(3) < 0.42


def test_config_rejects_bad_values():
    for kw, match in ((dict(splits={"dev": 1.0}), "unknown split"), (dict(splits={"train": 0.5}), "sum to 1"),
                      (dict(splits={"test": -1, "train": 2}), ">= 0"), (dict(ambiguous_every=-1), "ambiguous_every"),
                      (dict(train_condition_weights={"none": 0.5, "helpful": 0.4}), "sum to 1"),
                      (dict(train_condition_weights={"personalized": 1.0}), "unknown condition")):
        with pytest.raises(ValueError, match=match):
            ConditionsConfig(**kw)


def test_duplicate_ids_are_refused(loaded):
    with pytest.raises(ValueError, match="duplicate"):
        build_conditions(loaded["mmlu"] * 2)


def test_subjects_come_from_the_family():
    assert subject_of("mmlu:high_school_physics") == "high school physics"
    assert subject_of("flan:ai2_arc/ARC-Easy:1.0.0") == "science"
    assert subject_of("flan:snli:1.1.0") == "logic"
    assert subject_of("ultramedical:MedQA") == "medicine"
    assert subject_of("flan:gem/common_gen:1.1.0") == subject_of("compare") == "this subject"


def test_fill_aligned_slots(loaded):
    items = loaded["mmlu"] + loaded["alignx"]
    marked = attach_personas(items, ["a sailor who knits"], seed=0, aligned_share=1.0)
    marked[0] = marked[0].model_copy(update={"meta": {k: v for k, v in marked[0].meta.items() if k != "persona_slot"}})
    filled = fill_aligned_slots(marked, seed=0)
    assert filled[0] == marked[0]  # not marked: unchanged
    assert filled[3:] == marked[3:]  # personalized: unchanged
    for before, it in zip(marked[1:3], filled[1:3]):
        assert (it.id, it.condition, it.persona_pull) == (before.id, "helpful", it.gold)
        assert it.preferred_mode == "personalized"
        assert it.meta["persona_template"] in {t for k in HELPFUL.values() for t in k["train"]}
        assert it.meta["persona_source"] == "builtin" and _names(it.persona, it, it.gold, it.meta["persona_kind"])
    held = fill_aligned_slots(marked, seed=0, split="val")
    assert all(it.meta["persona_template"] in {t for k in HELPFUL.values() for t in k["heldout"]} for it in held[1:3])


def test_cli_writes_the_folder(loaded, tmp_path):
    from typer.testing import CliRunner

    from personadual.cli import app
    from personadual.data.schema import write_items

    src = tmp_path / "in.jsonl"
    write_items(src, loaded["mmlu"] + loaded["alignx"])
    r = CliRunner().invoke(app, ["data", "conditions", "--in", str(src), "--out", str(tmp_path / "out"), "--seed", "1"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    test = read_items(tmp_path / "out" / "test.jsonl")
    assert summary["counts"]["test"]["total"] == len(test) >= 3 * 4 + 2
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["counts"]["test"]["total"] == len(test)
    r = CliRunner().invoke(app, ["data", "conditions", "--in", str(src), "--out", str(tmp_path / "o2"),
                                 "--splits", "train=0.5,exam=0.5"])
    assert r.exit_code == 2 and "--splits" in r.output and "exam" in r.output


def test_cli_reports_a_bad_row_with_its_line(loaded, tmp_path):
    from typer.testing import CliRunner

    from personadual.cli import app

    good = loaded["mmlu"][0].model_dump(mode="json")
    bad = {**good, "id": "broken", "gold": "Z"}
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    r = CliRunner().invoke(app, ["data", "conditions", "--in", str(src), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert f"{src}:2" in r.output and "gold" in r.output
    assert not (tmp_path / "out").exists()

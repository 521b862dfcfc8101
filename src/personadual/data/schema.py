"""The item schema every stage reads: PersonaBench, real-source loaders, teacher output.

One JSONL row = one item = one question under one persona condition, with a trace per mode.
`read_items` validates every row and reports each bad one as ``file:line: field: what is wrong``;
valid rows are never lost (they ride on the error, or come back with the error list).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Condition = Literal["none", "irrelevant", "misaligned", "helpful", "ambiguous", "personalized"]
OBJECTIVE_CONDITIONS: tuple[str, ...] = ("none", "irrelevant", "misaligned", "helpful", "ambiguous")


class Trace(BaseModel):
    """One mode's reasoning for an item, and where it leads."""

    model_config = ConfigDict(extra="forbid")
    reasoning: str
    answer: str


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    kind: Literal["objective", "personalized"]
    family: str = Field(min_length=1)  # task family ("compare", "mmlu", "alignx", ...)
    condition: Condition
    question: str = Field(min_length=1)  # full question text, options included
    options: list[str] = Field(min_length=2)  # option letters, in order ("A", "B", ...)
    gold: str  # the right option letter
    persona: str | None = None
    persona_pull: str | None = None  # the option the persona points to, if any
    traces: dict[str, Trace] = Field(default_factory=dict)  # mode name -> trace
    preferred_mode: str | None = None  # the mode the data labels as right for this item
    split: Literal["train", "rl", "val", "test"] | None = None
    difficulty: int = 0
    base_id: str | None = None  # same base question under other conditions shares it
    source: str = "personabench"
    meta: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self):
        if self.gold not in self.options:
            raise ValueError(f"gold {self.gold!r} is not one of the options {self.options}")
        if (self.condition == "none") != (self.persona is None):
            raise ValueError("persona must be null exactly when condition is 'none'")
        if self.kind == "personalized" and self.condition != "personalized":
            raise ValueError("a personalized item must have condition 'personalized'")
        if self.kind == "objective" and self.condition == "personalized":
            raise ValueError("an objective item cannot have condition 'personalized'")
        if self.preferred_mode is not None and self.traces and self.preferred_mode not in self.traces:
            raise ValueError(f"preferred_mode {self.preferred_mode!r} has no trace")
        return self

    def trace_correct(self, mode: str) -> bool:
        """Does this mode's trace reach the gold answer?"""
        return mode in self.traces and self.traces[mode].answer == self.gold


class DataError(ValueError):
    """Bad rows in a JSONL file. ``errors`` lists ``file:line: field: message``; ``items`` holds the valid rows."""

    def __init__(self, errors: list[str], items: list[Item]):
        self.errors, self.items = errors, items
        super().__init__(self.message(limit=20))

    def message(self, limit: int | None = None) -> str:
        """One message naming every bad row (the first ``limit`` of them, and how many more)."""
        shown = self.errors if limit is None else self.errors[:limit]
        more = len(self.errors) - len(shown)
        return (f"{len(self.errors)} invalid row(s) ({len(self.items)} valid rows kept):\n" + "\n".join(shown)
                + (f"\n... and {more} more" if more else ""))


def validation_messages(e: ValidationError) -> list[str]:
    """``field: message`` per problem, so a row error names the field like the loaders' own errors do."""
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(row)"
        out.append(f"{loc}: {err['msg']}")
    return out


def parse_rows(lines: Iterable[str], where: str) -> tuple[list[Item], list[str]]:
    """Validate JSONL lines; returns (valid items, errors as ``where:line: field: message``)."""
    items, errors = [], []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}:{lineno}: (row): not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{where}:{lineno}: (row): expected a JSON object, got {type(row).__name__}")
            continue
        try:
            items.append(Item.model_validate(row))
        except ValidationError as e:
            errors.extend(f"{where}:{lineno}: {msg}" for msg in validation_messages(e))
    return items, errors


def read_items(path: str | os.PathLike, on_error: Literal["raise", "skip"] = "raise") -> list[Item]:
    """Read and validate a JSONL file of items.

    ``on_error="raise"`` raises `DataError` after reading the whole file, so every bad row is
    reported at once and the valid ones stay available as ``err.items``; ``"skip"`` drops bad rows.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        items, errors = parse_rows(f, str(path))
    if errors and on_error == "raise":
        raise DataError(errors, items)
    return items


def read_split(path: str | os.PathLike, split: str) -> list[Item]:
    """Items from a JSONL file, or from a PersonaBench directory's ``{split}.jsonl``."""
    path = Path(path)
    return read_items(path / f"{split}.jsonl" if path.is_dir() else path)


def sample_items(items: list[Item], n: int, seed: int = 0) -> list[Item]:
    """A fixed random sample, so a quick check covers every family and condition."""
    return items if n >= len(items) else random.Random(seed).sample(items, n)


def write_items(path: str | os.PathLike, items: Iterable[Item]) -> int:
    """Write items as JSONL atomically (temp file + rename): a crash never leaves half a file."""
    from ..files import write_lines_atomic

    return write_lines_atomic(path, (item.model_dump_json(exclude_none=False) + "\n" for item in items))

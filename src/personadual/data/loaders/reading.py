"""Reading a source (local file or hub dataset) and turning its rows into Items, errors and skips.

`open_rows` reads through Hugging Face `datasets`; `convert_rows` runs a source's converter over the
rows. A converter signals a bad row with `BadRow` (reported as ``where:row N: field: problem``, N
counting records from 1) and an out-of-scope row with `SkipRow` (counted under its reason, never an
error). A reader that judges rows itself (`personadual.data.mmlu`) puts a `BadRow` or `SkipRow` in a
row's place, so row numbers stay the file's.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from ..schema import Item, validation_messages


class SkipRow(Exception):
    """A well-formed row that is out of scope: counted under its reason, not an error."""


class BadRow(Exception):
    """A row that cannot be converted: ``field: problem``."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")


def row_field(row: dict, *names: str, kind: type = str):
    """The first present field among ``names``; a wrong type or empty text is a row error."""
    for name in names:
        if row.get(name) is not None:
            value = row[name]
            if not isinstance(value, kind) or (kind is str and not value.strip()):
                raise BadRow(name, f"expected non-empty {kind.__name__}, got {value!r:.60}")
            return value
    raise BadRow(names[0], "missing")


_BUILDERS = {".json": "json", ".jsonl": "json", ".gz": "json", ".csv": "csv", ".parquet": "parquet"}


def _raw_json(path: Path) -> list:
    """Rows parsed one by one, so a line `datasets` cannot read becomes one row error, not a crash."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, list) else [data]
        except json.JSONDecodeError as e:
            return [BadRow("(file)", f"not valid JSON ({e.msg} at line {e.lineno})")]
    rows = []
    for line in filter(str.strip, path.read_text(encoding="utf-8").splitlines()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            rows.append(BadRow("(row)", f"not valid JSON ({e.msg} at column {e.colno})"))
    return rows


def open_rows(path, hf_name, split, *, hf_config=None, cache_dir=None, csv_columns=None):
    """(rows, where): a `datasets.Dataset` (or a list of rows) and the name errors cite."""
    import datasets

    if (path is None) == (hf_name is None):
        raise ValueError("give exactly one of path (a local file) and hf_name (a hub dataset id)")
    if hf_name is not None:
        return datasets.load_dataset(hf_name, hf_config, split=split, cache_dir=cache_dir), f"{hf_name}[{split}]"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    builder = _BUILDERS.get(path.suffix)
    if builder is None:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(_BUILDERS)}")
    kwargs = {"cache_dir": cache_dir}
    if builder == "csv" and csv_columns:
        with path.open(encoding="utf-8", newline="") as f:
            first = next(csv.reader(f), [""])
        if first[0].strip().lower() != csv_columns[0]:  # no header row: name the columns
            kwargs["column_names"] = csv_columns
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs), str(path)
    except datasets.exceptions.DatasetGenerationError:
        if builder != "json" or path.suffix == ".gz":
            raise
        return _raw_json(path), str(path)


def convert_rows(convert: Callable[..., Item], rows, where: str, limit: int | None, shuffle: bool, opts: dict):
    """(items, errors, skipped, rows seen): every bad row is collected, so one read reports them all."""
    order = list(range(len(rows)))
    if shuffle:  # sample rows, not the file's head (UltraMedical is sorted by subset)
        random.Random(f"{opts['seed']}-shuffle").shuffle(order)
    items, errors, skipped, seen = [], [], Counter(), 0
    for index in order:
        if limit is not None and len(items) >= limit:
            break
        seen, row, at = seen + 1, rows[index], f"{where}:row {index + 1}"
        try:
            if isinstance(row, (BadRow, SkipRow)):  # a reader's verdict on the row, before any conversion
                raise row
            if not isinstance(row, dict):
                raise BadRow("(row)", f"expected an object, got {type(row).__name__}")
            items.append(convert(row, index, **opts))
        except SkipRow as s:
            skipped[str(s)] += 1
        except BadRow as b:
            errors.append(f"{at}: {b}")
        except ValidationError as e:
            errors.extend(f"{at}: {msg}" for msg in validation_messages(e))
    return items, errors, skipped, seen

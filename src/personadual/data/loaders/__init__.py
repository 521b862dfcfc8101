"""Loaders for the paper's real data sources -> `Item` rows (full mapping: docs/data_sources.md).

Each source is read through Hugging Face `datasets` (a local file as the source ships it, or a hub
id), then converted row by row. A row that cannot be converted is reported as
``where:row N: field: problem`` (N counts records from 1) and all of them are raised together as a
`DataError` whose ``.items`` keeps the good rows. Rows that are well-formed but out of scope (an
open-ended UltraMedical question, a FLAN row whose target is not one of its options) are skipped
and counted (``report=`` dict), never errors.

Modules, one per concern:

- `reading`: file/hub reading, row errors (`BadRow`) and skips (`SkipRow`), the row loop.
- `multiple_choice`: mmlu, flan, ultramedical -> objective items (condition "none", no traces:
  the teacher writes traces later).
- `alignx`: prompt, chosen/rejected as options A/B in a seeded order, persona written from the
  90-dimension "Preference Direction" (`ALIGNX_DIMENSIONS`).
- `personahub`: persona strings (`load_personas`); `attach_personas` gives them to persona-less
  objective items as "irrelevant" personas (the paper's "unaligned" ones).

This module holds `SOURCES` and `load_source`, and re-exports the public names of the others.
"""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path
from typing import Callable

from ..schema import DataError, Item
from .alignx import ALIGNX_DIMENSIONS, alignx_item
from .multiple_choice import LETTERS, MMLU_CSV_COLUMNS, flan_item, mmlu_item, ultramedical_item
from .personahub import attach_personas, load_personas
from .reading import convert_rows, open_rows

__all__ = ["ALIGNX_DIMENSIONS", "LETTERS", "SOURCES", "alignx_item", "attach_personas", "flan_item",
           "load_personas", "load_source", "mmlu_item", "ultramedical_item"]

log = logging.getLogger(__name__)

SOURCES: dict[str, Callable[..., Item]] = {
    "mmlu": mmlu_item, "flan": flan_item, "ultramedical": ultramedical_item, "alignx": alignx_item}


def load_source(source: str, path: str | None = None, *, hf_name: str | None = None, split: str = "train",
                limit: int | None = None, seed: int = 0, personas: list[str] | None = None, **opts) -> list[Item]:
    """Load ``source`` from a local file (``path``) or the hub (``hf_name``) as validated Items.

    Reader options: ``hf_config`` (hub config name), ``cache_dir``, ``shuffle`` (visit rows in a
    seeded random order, so ``limit`` samples), ``on_error`` ("raise": a `DataError` listing every
    bad row, good ones on ``.items``; "skip": log and drop them), ``report`` (a dict filled with
    row/item/skip/error counts). ``personas`` (with ``aligned_share``) goes to
    `attach_personas`. Anything else is the source's own option (see its ``*_item`` function).
    """
    if source == "personahub":
        raise ValueError("personahub holds personas, not items: use load_personas() and attach_personas(), "
                         "or pass personas=... when loading another source")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(sorted(SOURCES))} (and personahub via load_personas)")
    convert = SOURCES[source]
    reader = {k: opts.pop(k) for k in ("hf_config", "cache_dir") if k in opts}
    on_error, report = opts.pop("on_error", "raise"), opts.pop("report", None)
    aligned_share, shuffle = opts.pop("aligned_share", 0.0), opts.pop("shuffle", False)
    known = set(inspect.signature(convert).parameters) - {"row", "index", "seed"}
    if unknown := set(opts) - known:
        raise ValueError(f"unknown option(s) for {source}: {sorted(unknown)}; known: {sorted(known)}")
    if source == "alignx" and not 0 <= opts.get("dislike_threshold", 0.4) < opts.get("like_threshold", 0.6) <= 1:
        raise ValueError("alignx: need 0 <= dislike_threshold < like_threshold <= 1")
    if source == "mmlu" and str(path).endswith(".csv"):  # the original per-subject CSVs: astronomy_test.csv
        opts.setdefault("subject", re.sub(r"_(test|dev|val|validation|train)$", "", Path(path).stem))
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    rows, where = open_rows(path, hf_name, split, csv_columns=MMLU_CSV_COLUMNS if source == "mmlu" else None, **reader)
    items, errors, skipped, seen = convert_rows(convert, rows, where, limit, shuffle, {"seed": seed, **opts})
    log.info("%s: %d rows -> %d items, skipped %s, %d errors", where, seen, len(items), dict(skipped), len(errors))
    if report is not None:
        report.update(source=source, where=where, rows=seen, items=len(items), skipped=dict(skipped), errors=len(errors))
    if personas:
        items = attach_personas(items, personas, seed=seed, aligned_share=aligned_share)
    if errors and on_error == "raise":
        raise DataError(errors, items)
    return items


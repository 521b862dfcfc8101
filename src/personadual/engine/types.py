"""What both engines share: the settings and result types, and how a response opens.

- ``p(mode | prompt)`` for every prompt: the next-token distribution at the first completion
  position, renormalised over the registered markers (`personadual.modes.marker_distribution`). It
  says how much the model thinks the persona matters here: our "persona relevance" score.
  ``marker_mass`` is the un-renormalised total, p(any marker | prompt): near 1 for a healthy model;
- ``mode="auto"``: the model chooses its marker from p(mode | prompt) (`choose_modes`), then
  continues exactly as if that marker had been forced; a mode name forces it by prefilling the marker.

An engine with ``modes=None`` runs the ``plain`` protocol: a model without markers (any base or
instruct model) answers in its own words, read by `personadual.answers`; there is no mode to force
and no p(mode).

Prompts go in as rendered text and become ids through `personadual.tokenization.prompt_ids`, the
rule training uses too, so an engine continues exactly the ids a model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .. import modes as modes_lib
from ..answers import parse_plain
from ..modes import AUTO, ModeSet, Parsed
from ..tokenization import completion_ids, prompt_ids


@dataclass
class GenerationConfig:
    max_new_tokens: int = 96
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    batch_size: int = 64
    stop: tuple[str, ...] = (modes_lib.ANSWER_CLOSE,)
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass
class Generation:
    prompt: str
    text: str  # the completion, marker included (forced or generated)
    forced: bool
    p_mode: dict[str, float]  # p(mode | prompt), over the registered markers
    parsed: Parsed
    num_tokens: int = 0  # generated tokens: an auto response's marker counts, a forced one's does not
    marker_mass: float | None = None  # p(any marker | prompt) before renormalising; None where not computed

    @property
    def mode(self) -> str | None:
        return self.parsed.mode


@dataclass
class Opening:
    """How each row's completion opens: the prefilled text and ids (its forced marker, or the model's
    choice for an auto row), and how many of those ids count as generated."""

    texts: list[str]
    ids: list[list[int]]
    counted: list[int]


class EngineBase:
    """Prompt rendering and the mode bookkeeping both engines share. Subclasses set ``tokenizer``,
    ``modes``, ``marker_ids`` and ``chat_template_kwargs``."""

    tokenizer: object
    modes: ModeSet | None  # None: the plain protocol (a model without mode markers)
    chat_template_kwargs: dict

    @property
    def protocol(self) -> str:
        return "plain" if self.modes is None else "modes"

    @property
    def mode_names(self) -> list[str]:
        return [] if self.modes is None else self.modes.names

    def parse(self, text: str) -> Parsed:
        return parse_plain(text) if self.modes is None else modes_lib.parse(text, self.modes)

    def no_mode_rows(self, n: int) -> torch.Tensor:
        """p(mode | prompt) of a plain model: no modes, so rows of width 0."""
        return torch.empty(n, 0, dtype=torch.float64)

    def render_prompt(self, question: str, persona: str | None = None, **kwargs) -> str:
        """Question + persona -> the prompt text, rendered as this model was trained to see it."""
        return modes_lib.render_prompt(self.tokenizer, question, persona,
                                       chat_template_kwargs=self.chat_template_kwargs, **kwargs)

    def prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        return prompt_ids(self.tokenizer, prompts)

    def requested_modes(self, prompts: Sequence[str], mode: str | Sequence[str]) -> list[str]:
        modes_per = [mode] * len(prompts) if isinstance(mode, str) else list(mode)
        if len(modes_per) != len(prompts):
            raise ValueError(f"got {len(modes_per)} modes for {len(prompts)} prompts")
        for m in set(modes_per):
            if m != AUTO and self.modes is None:
                raise ValueError(f"cannot force mode {m!r}: this model has no mode markers (plain protocol)")
            if m != AUTO:
                self.modes.get(m)  # clear KeyError for an unknown mode
        return modes_per

    def input_ids(self, prompts: Sequence[str], mode: str | Sequence[str], p_mode=None,
                  temperature: float = 0.0) -> list[list[int]]:
        """The ids an engine continues for these prompts: prompt ids + the opening marker's ids."""
        requested = self.requested_modes(prompts, mode)
        if p_mode is None and AUTO in requested and self.modes is not None:
            p_mode = self.mode_probs(prompts)
        opened = opening(requested, p_mode, self.modes, temperature, self.tokenizer)
        return [p + x for p, x in zip(self.prompt_ids(prompts), opened.ids)]

    def mode_probs(self, prompts: Sequence[str], batch_size: int = 64):
        raise NotImplementedError


def choose_modes(p_mode, names: Sequence[str], temperature: float) -> list[str]:
    """The mode each auto response opens with: the model's own choice, restricted to the markers.

    Greedy (T = 0): argmax_m p(m|x), the marker greedy decoding writes whenever a marker is the top
    token. Sampled: m ~ softmax(z_m / T) over the marker logits z, i.e. p(m|x)^(1/T) renormalised:
    what sampling the first token at temperature T gives, conditioned on it being a marker.

    Why restrict: "every response opens with a mode marker" is the method's contract, and RL can
    break it. A large negative advantage on one marker moves shared parameters (tied embeddings),
    which can lower every marker's logit at once; the probability leaks to reasoning words, and an
    unconstrained first token then skips the marker. ``marker_mass`` keeps the leak visible.
    Uses the global torch RNG (seeded by GenerationConfig.seed).
    """
    p = check_mode_rows(p_mode, len(p_mode))
    if p.shape[0] == 0:
        return []
    if temperature == 0:
        idx = p.argmax(dim=1)
    else:
        w = p.clamp(min=1e-300).log().div(temperature)
        idx = torch.multinomial(torch.softmax(w, dim=1), 1).squeeze(1)
    return [names[int(k)] for k in idx]


def opening(requested: Sequence[str], p_mode, modes: ModeSet, temperature: float, tokenizer) -> Opening:
    """What each row's completion opens with (both engines). An auto row's marker was the model's
    choice, so its ids count as generated; a forced one's do not."""
    if modes is None:  # plain protocol: the completion opens with nothing
        return Opening([""] * len(requested), [[] for _ in requested], [0] * len(requested))
    opens = list(requested)
    if AUTO in requested:
        chosen = choose_modes(p_mode, modes.names, temperature)
        opens = [c if m == AUTO else m for m, c in zip(requested, chosen)]
    texts = [modes_lib.forced_prefix(m, modes) for m in opens]
    ids_of = {t: completion_ids(tokenizer, t) for t in set(texts)}  # one tokenization per mode
    ids = [list(ids_of[t]) for t in texts]
    return Opening(texts, ids, [len(x) if m == AUTO else 0 for x, m in zip(ids, requested)])


def check_mode_rows(p_mode, n: int) -> torch.Tensor:
    """Precomputed p(mode | prompt) rows as a tensor, one per prompt (both engines accept them)."""
    rows = torch.as_tensor(p_mode, dtype=torch.float64)  # float32 values (HF) and vLLM's float64 both exact
    if rows.shape[0] != n:
        raise ValueError(f"p_mode has {rows.shape[0]} rows for {n} prompts")
    return rows


def until_end(ids: list[int], end_ids) -> list[int]:
    """The generated ids before the first end-of-sequence (or padding) id."""
    for k, t in enumerate(ids):
        if t in end_ids:
            return ids[:k]
    return ids


PROTOCOLS = ("auto", "modes", "plain")


def pick_protocol(tokenizer, modes: ModeSet, protocol: str = "modes") -> ModeSet | None:
    """The ModeSet an engine runs (``modes``), or None for the plain protocol.

    ``auto``: modes when every marker is one token of this tokenizer (it was registered in
    training), else plain. ``modes`` on a model without its markers is an error that names the way out.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "plain":
        return None
    has = all(len(tokenizer.encode(m, add_special_tokens=False)) == 1 for m in modes.markers)
    if protocol == "auto":
        return modes if has else None
    if not has:
        raise ValueError(f"this model has no mode markers ({', '.join(modes.markers)} are not single tokens): "
                         "evaluate it with --protocol plain (or auto)")
    return modes

"""Evaluation protocols as objects: how a model is asked and how its answer is read, chosen once.

- `ModesProtocol`: a mode model generates; with every mode forced, the auto run is assembled from the
  forced ones (`generation.runs_by_mode`), for HAcc, separation and calibration;
- `PlainProtocol`: a model without markers generates; the answer is read from its free text
  (`personadual.answers`), and replies no answer can be read from are counted;
- `ChoiceProtocol`: nothing generated; the options scored by log-likelihood in one of `choice.FORMS`
  (text, letter, cloze, cloze-chat), on a plain or a mode model, the general mode read after the
  prompt as given or with its persona set aside (`choice.GENERAL_CONTEXTS`).

Each object owns how it runs items (`run`), how many sequences that is (`sequences`, for a progress
bar) and which metrics it reports (`metrics`: mode keys only where its predictions carry modes,
unreadable replies only where answers are read from free text). The generating two also say what an
endpoint is asked (`runs_to_ask`, `request_fields`) and how its replies are read (`read`, `assemble`).

Why objects: a protocol named by a string would be asked again at every step (which runs, how to read,
what to report). The strings of the command line are read once, by `load_protocol` on a loaded engine or
`open_protocol` from a model directory, and every later step asks the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..data.schema import Item
from ..engine import PROTOCOLS, Generation, GenerationConfig, load_engine
from ..modes import AUTO
from .choice import FORMS, choice_runs, rows_to_score
from .generation import predict, read_generation, runs_by_mode, with_auto_run
from .metrics import compute_metrics
from .predictions import Prediction

Runs = dict[str, list[Prediction]]  # run name (auto, or a forced mode) -> its predictions, aligned item by item
CHOICE_NEEDS_HF = ("--protocol choice scores option log-likelihoods on the HF engine (--backend hf); "
                   "the vLLM engine does not")


@dataclass(frozen=True)
class RunSettings:
    """What one evaluation asks of any protocol."""

    mode: str = AUTO  # auto, or a mode to force for every item
    forced: bool = True  # also every mode forced (a mode model), for HAcc and calibration
    drop_persona: bool = False  # every persona removed: the interference-free upper bound
    batch_size: int = 128
    max_new_tokens: int = 96  # the generating protocols only


class Protocol:
    """How a model is asked and read (see the module docstring); subclasses set the three class fields."""

    name: str  # what metrics.json's "protocol" says
    carries_modes: bool  # its predictions have modes: mode share, agreement, and HAcc where forced
    reads_free_text: bool  # its answers are read from text, so some may be unreadable (counted)

    def __init__(self, engine=None):
        self.engine = engine

    def check(self, settings: RunSettings) -> None:
        """A clear error, before anything runs, for settings this protocol cannot honour."""
        if not self.carries_modes and settings.mode != AUTO:
            raise ValueError(f"cannot force mode {settings.mode!r}: this model has no mode markers (plain protocol)")

    def sequences(self, items: Sequence[Item], settings: RunSettings) -> int:
        """How many sequences `run` generates or scores: a progress bar's total."""
        return len(items)

    def run(self, items: Sequence[Item], settings: RunSettings, progress=None) -> tuple[Runs, dict]:
        """The runs (auto first, then any forced ones) and what metrics.json should say about how they were
        read (keys after the evaluation's own); ``progress`` is told each batch's size."""
        raise NotImplementedError

    def metrics(self, runs: Runs, n_boot: int = 1000) -> dict:
        """metrics.json's measures of these runs, with the keys this protocol reports."""
        return compute_metrics(runs, n_boot, self.name, modes=self.carries_modes, unreadable=self.reads_free_text)


class GeneratingProtocol(Protocol):
    """What the two generating protocols share: in-process generation, or an endpoint's replies read alike."""

    def __init__(self, engine=None, mode_names: Sequence[str] | None = None):
        super().__init__(engine)
        self.mode_names = list(mode_names if mode_names is not None else engine.mode_names if engine is not None else [])

    def runs_to_ask(self, settings: RunSettings) -> list[str]:
        """The runs an endpoint is asked for, each item once per run."""
        return [AUTO]

    def request_fields(self, run: str) -> dict:
        """The fields an endpoint request for ``run`` carries beyond the chat."""
        return {}

    def read(self, item: Item, generation: Generation, run: str) -> Prediction:
        """One reply, read against its item."""
        return read_generation(item, generation, run, plain=self.reads_free_text)

    def assemble(self, by_run: Runs) -> Runs:
        """An endpoint's runs as an evaluation reports them: one asked run is the auto run."""
        return by_run if AUTO in by_run else {AUTO: next(iter(by_run.values()))}


class ModesProtocol(GeneratingProtocol):
    """A mode model opens each answer with a marker, forced or its own choice."""

    name, carries_modes, reads_free_text = "modes", True, False

    def __init__(self, engine=None, mode_names: Sequence[str] | None = None):
        if engine is not None and engine.modes is None:
            raise ValueError("the modes protocol needs a model with mode markers; this engine was loaded without "
                             "them: evaluate it with --protocol plain (or auto)")
        super().__init__(engine, mode_names)

    def sequences(self, items: Sequence[Item], settings: RunSettings) -> int:
        every_mode = settings.forced and settings.mode == AUTO
        return (len(self.mode_names) if every_mode else 1) * len(items)

    def run(self, items: Sequence[Item], settings: RunSettings, progress=None) -> tuple[Runs, dict]:
        cfg = GenerationConfig(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
        if settings.forced and settings.mode == AUTO:
            return runs_by_mode(self.engine, items, cfg, drop_persona=settings.drop_persona, progress=progress), {}
        return {AUTO: predict(self.engine, items, settings.mode, cfg, drop_persona=settings.drop_persona,
                              progress=progress)}, {}

    def runs_to_ask(self, settings: RunSettings) -> list[str]:
        return self.mode_names if settings.forced and settings.mode == AUTO else [settings.mode]

    def request_fields(self, run: str) -> dict:
        return {"mode": run, "include_reasoning": True}

    def assemble(self, by_run: Runs) -> Runs:
        return super().assemble(with_auto_run(by_run, self.mode_names) if len(by_run) > 1 else by_run)


class PlainProtocol(GeneratingProtocol):
    """A model without markers answers in its own words; the answer is read from them."""

    name, carries_modes, reads_free_text = "plain", False, True

    def __init__(self, engine=None):
        if engine is not None and engine.modes is not None:
            raise ValueError("the plain protocol needs an engine loaded without mode markers "
                             "(load_engine(..., protocol='plain')); this one opens answers with them")
        super().__init__(engine, [])

    def run(self, items: Sequence[Item], settings: RunSettings, progress=None) -> tuple[Runs, dict]:
        cfg = GenerationConfig(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
        return {AUTO: predict(self.engine, items, settings.mode, cfg, drop_persona=settings.drop_persona,
                              progress=progress)}, {}


class ChoiceProtocol(Protocol):
    """The options scored by log-likelihood in ``form``; a mode model has every mode scored (`choice`)."""

    name, reads_free_text = "choice", False

    def __init__(self, engine, form: str = "text", general_context: str = "persona"):
        if not hasattr(engine, "scorer"):
            raise ValueError(CHOICE_NEEDS_HF)
        check_choice_form(form)
        super().__init__(engine)
        self.form, self.general_context = form, general_context

    @property
    def carries_modes(self) -> bool:
        return self.engine.modes is not None

    def sequences(self, items: Sequence[Item], settings: RunSettings) -> int:
        # a mode model scores every mode whenever auto is asked for (its pick needs p(mode | x) first)
        runs = len(self.engine.mode_names) if settings.mode == AUTO else 1
        return runs * rows_to_score(items, self.form, self.engine.modes is None)

    def run(self, items: Sequence[Item], settings: RunSettings, progress=None) -> tuple[Runs, dict]:
        runs, scored = choice_runs(self.engine, items, self.form, settings.mode, settings.forced, settings.drop_persona,
                                   settings.batch_size, progress, self.general_context)
        return runs, {"choice": scored}


def check_choice_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"--choice-form: expected one of {', '.join(FORMS)}, got {form!r}")


def load_protocol(engine, name: str = "auto", form: str = "text", general_context: str = "persona") -> Protocol:
    """The protocol ``name`` on a loaded engine: auto (modes when the engine has the markers, else plain),
    modes, plain or choice (in ``form``, with ``general_context`` for a mode model's general mode)."""
    if name == "choice":
        return ChoiceProtocol(engine, form, general_context)
    if name not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, choice, got {name!r}")
    if general_context != "persona":
        raise ValueError("--general-context set-aside applies to --protocol choice")
    if name == "plain" or (name == "auto" and engine.modes is None):
        return PlainProtocol(engine)
    return ModesProtocol(engine)


def open_protocol(model_dir, name: str = "auto", engine=None, backend: str = "hf",
                  chat_template_kwargs: dict | None = None, form: str = "text",
                  general_context: str = "persona") -> Protocol:
    """The protocol ``name`` on ``model_dir``: the engine loaded as that protocol needs it (choice: the HF
    engine, markers wherever the model has them), unless ``engine`` is given. Settings that cannot work
    are refused before a model is loaded."""
    choice = name == "choice"
    if choice and (backend != "hf" or (engine is not None and not hasattr(engine, "scorer"))):
        raise ValueError(CHOICE_NEEDS_HF)
    if choice:
        check_choice_form(form)
    if general_context != "persona" and not choice:
        raise ValueError("--general-context set-aside applies to --protocol choice")
    engine = engine or load_engine(model_dir, backend, chat_template_kwargs=chat_template_kwargs,
                                   protocol="auto" if choice else name)
    return load_protocol(engine, name, form, general_context)

"""``data teach``: teacher traces for every item, verified, labelled, written as they finish.

Files. ``out`` gets one `Item` per kept item (valid for `read_items`, SFT mixes, ...);
``out`` + ``.rejected.jsonl`` gets one row per dropped item (no verified trace), with the teacher's
answers and why. Both are appended one fsynced line per finished item, so a rerun skips every id
found in either and a kill loses nothing finished (`store.repair` trims a torn last line). Items
whose requests failed after all retries are written nowhere: a rerun tries them again. Rows land in
completion order, not input order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..schema import Item, read_items
from . import traces as tr
from .client import ChatClient, TeacherError, TeacherFatal, for_each
from ...files import Appender, repair

log = logging.getLogger(__name__)


@dataclass
class TeacherJob:
    """What every resumable teacher run shares (`TeachConfig`, `data personas`' `PersonasConfig`): the
    teacher, the input, the output and its ``.rejected.jsonl`` sibling, and the request settings."""

    endpoint: str  # teacher base URL, e.g. http://127.0.0.1:8000/v1
    model: str  # teacher model id
    input: Path  # items JSONL
    out: Path  # output JSONL (appended; rerun to resume)
    api_key: str | None = None
    concurrency: int = 8  # most requests in flight
    retries: int = 4  # extra attempts per request (the openai client's backoff)
    timeout: float = 120.0  # seconds per request
    temperature: float = 0.0
    max_tokens: int = 1024
    extra_body: dict | None = None  # merged into every teacher request
    limit: int | None = None  # only the first N items of the input
    progress: bool = True

    def __post_init__(self):
        self.input, self.out = Path(self.input), Path(self.out)
        if self.concurrency < 1 or self.retries < 0 or self.max_tokens < 1:
            raise ValueError("need concurrency >= 1, retries >= 0, max_tokens >= 1")
        if self.input.resolve() == self.out.resolve():
            raise ValueError("out must not be the input file")

    @property
    def rejected(self) -> Path:
        return self.out.with_name(self.out.name + ".rejected.jsonl")


@dataclass
class TeachConfig(TeacherJob):
    judge_endpoint: str | None = None  # optional grader of verified traces
    judge_model: str | None = None
    judge_api_key: str | None = None  # defaults to api_key
    personadual_server: bool = False  # the teacher is `personadual serve`: ask it natively (mode, persona)

    def __post_init__(self):
        super().__post_init__()
        if (self.judge_endpoint is None) != (self.judge_model is None):
            raise ValueError("judge_endpoint and judge_model go together")

    def client(self, judge: bool = False) -> ChatClient:
        return ChatClient(self.judge_endpoint if judge else self.endpoint, self.judge_model if judge else self.model,
                          (self.judge_api_key or self.api_key) if judge else self.api_key, self.concurrency,
                          self.retries, timeout=self.timeout, extra_body=None if judge else self.extra_body)


async def teach_item(item: Item, cfg: TeachConfig, teacher: ChatClient, judge: ChatClient | None) -> dict[str, tr.Outcome]:
    """Ask for each mode's trace (concurrently), read them, and let the judge grade the right ones."""
    async def one(mode: str) -> tr.Outcome:
        messages, extra = tr.teacher_request(item, mode, cfg.personadual_server)
        reply = await teacher.complete(messages, cfg.temperature, cfg.max_tokens, extra)
        out = tr.read_reply(reply, mode, item)
        if out.verified and judge is not None:
            verdict = await judge.complete(tr.judge_messages(item, mode, out.trace), 0.0, 64)
            out.judged = out.verified = tr.judge_verdict(verdict)
            out.problem = "" if out.verified else "the judge said no"
        return out

    try:  # a failed mode cancels the other: the item is retried whole on the next run
        async with asyncio.TaskGroup() as tg:
            tasks = {m: tg.create_task(one(m)) for m in tr.modes_to_ask(item)}
    except* TeacherError as eg:
        raise eg.exceptions[0] from None
    return {m: t.result() for m, t in tasks.items()}


def teach(cfg: TeachConfig) -> dict:
    """Run (or resume) a teach job; returns counts."""
    items = read_items(cfg.input)[: cfg.limit]
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{cfg.input}: item ids must be unique to resume by id")
    done = {row["id"] for row in repair(cfg.out) + repair(cfg.rejected)}
    todo = [it for it in items if it.id not in done]
    counts = asyncio.run(_run(cfg, todo, len(items) - len(todo)))
    counts.update(total=len(items), skipped=len(items) - len(todo))
    return {k: counts.get(k, 0) for k in ("total", "skipped", "kept", "dropped", "failed", "retries",
                                          "preferred_general", "preferred_personalized")} | {
        "out": str(cfg.out), "rejected": str(cfg.rejected)}


async def _run(cfg: TeachConfig, todo: list[Item], already: int) -> Counter:
    from tqdm import tqdm

    counts: Counter = Counter()
    bar = tqdm(total=len(todo) + already, initial=already, desc="teach", unit="item", disable=not cfg.progress)
    judge = cfg.client(judge=True) if cfg.judge_endpoint else None
    with Appender(cfg.out) as kept_f, Appender(cfg.rejected) as rejected_f:
        async with cfg.client() as teacher:
            if judge is not None:
                await judge.__aenter__()

            async def handle(item: Item) -> None:
                try:
                    outcomes = await teach_item(item, cfg, teacher, judge)
                except TeacherFatal:
                    raise
                except TeacherError as e:
                    counts["failed"] += 1
                    log.warning("%s: failed after retries: %s", item.id, e)
                    return
                labelled = tr.label(item, outcomes, cfg.model)
                if labelled is None:
                    counts["dropped"] += 1
                    rejected_f.write({"id": item.id, "reason": "no verified trace",
                                      **{m: o.summary() for m, o in outcomes.items()}})
                else:
                    counts["kept"] += 1
                    counts[f"preferred_{labelled.preferred_mode}"] += 1
                    kept_f.write(labelled.model_dump_json())
                bar.update(1)
                bar.set_postfix(kept=counts["kept"], dropped=counts["dropped"], failed=counts["failed"])

            try:
                await for_each(todo, cfg.concurrency, handle)
            finally:
                bar.close()
                counts["retries"] = teacher.retried + (judge.retried if judge else 0)
                if judge is not None:
                    await judge.__aexit__(None, None, None)
    return counts


def env_api_key(explicit: str | None, *names: str) -> str | None:
    return explicit or next((os.environ[n] for n in names if os.environ.get(n)), None)

"""`personadual eval --endpoint URL --model NAME`: the same evaluation through any OpenAI-compatible
chat endpoint (vLLM's server, `personadual serve`, a hosted API).

Each item is asked as it is in training: one user turn, the persona in it ("I am {persona}, my question
is: ..."), greedy. What the endpoint is decides the protocol (``auto``):

- a PersonaDual server (``GET /health`` lists its modes): the modes protocol. Each item is asked once
  per mode, forced by the request's ``mode`` field, and the reply's ``personadual`` field gives the
  mode, p(mode | x), the parsed answer and the format check; the auto run is assembled from the
  forced ones exactly as in-process (`generation.with_auto_run`), so mode share, HAcc and
  calibration mean the same;
- anything else: the plain protocol, answers read from the reply text (`personadual.answers`).

Which it is is decided once (`detect`), as a protocol object (`protocols.ModesProtocol` or
`protocols.PlainProtocol`), which then says what each request asks and how each reply is read.

Every reply is appended to ``OUT/responses.jsonl`` as it arrives (one fsynced row, keyed by item and
run). A rerun, after a crash or a kill -9, reads that file and asks only what is missing; only a
request in flight at the kill is asked again. ``OUT/endpoint.json`` pins the endpoint, model and
protocol, so a rerun cannot mix two models' answers. metrics.json is written once every reply is in.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .. import modes as modes_lib
from ..data.schema import Item, read_split
from ..data.teach.client import ChatClient, TeacherError, TeacherFatal, for_each, reply_text
from ..engine import PROTOCOLS, Generation
from ..files import Appender, repair, write_text_atomic
from ..modes import AUTO, Parsed
from .protocols import GeneratingProtocol, ModesProtocol, PlainProtocol, RunSettings
from .run import write_results

log = logging.getLogger(__name__)


class EndpointError(RuntimeError):
    """The evaluation cannot go on (refused key, unknown model, wrong URL, requests that kept failing)."""


@dataclass
class EndpointConfig:
    url: str  # base URL, e.g. http://127.0.0.1:8000/v1
    model: str  # the model id the endpoint serves
    api_key: str | None = None
    concurrency: int = 8
    retries: int = 4
    timeout: float = 120.0
    max_tokens: int = 96
    mode: str = AUTO  # auto, or a mode to force (PersonaDual servers only)
    forced: bool = True  # with a PersonaDual server: ask every item in every mode (HAcc, calibration)
    drop_persona: bool = False
    protocol: str = "auto"  # auto | modes | plain
    chat_template_kwargs: dict | None = None  # sent with each request (vLLM and `personadual serve` read it)
    limit: int | None = None
    progress: bool = True
    extra_body: dict | None = None  # merged into every request (e.g. {"max_completion_tokens": 512})

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.concurrency < 1 or self.max_tokens < 1:
            raise ValueError("need concurrency >= 1 and max_tokens >= 1")


def requests_for(items: list[Item], protocol: GeneratingProtocol, cfg: EndpointConfig) -> list[tuple[Item, str]]:
    """(item, run) pairs to ask: every mode per item for HAcc, else the one requested run."""
    if not protocol.carries_modes and cfg.mode != AUTO:
        raise ValueError(f"cannot force mode {cfg.mode!r} through an endpoint without modes (plain protocol)")
    return [(it, run) for run in protocol.runs_to_ask(RunSettings(cfg.mode, cfg.forced)) for it in items]


def request_body(item: Item, run: str, protocol: GeneratingProtocol, cfg: EndpointConfig) -> tuple[list[dict], dict]:
    """The messages and extension fields of one request."""
    messages = modes_lib.render_messages(item.question, None if cfg.drop_persona else item.persona)
    extra = dict(cfg.extra_body or {})
    if cfg.chat_template_kwargs is not None:
        extra["chat_template_kwargs"] = cfg.chat_template_kwargs
    extra.update(protocol.request_fields(run))
    return messages, extra


def generation_of(row: dict, protocol: GeneratingProtocol) -> Generation:
    """A logged reply -> the `Generation` an in-process engine would have produced for it."""
    body = row["body"]
    content = body["choices"][0]["message"].get("content") or ""
    tokens = (body.get("usage") or {}).get("completion_tokens") or 0
    meta = body.get("personadual")
    if not protocol.carries_modes or not isinstance(meta, dict):
        return Generation("", content, False, {}, Parsed(None, content, None, False), tokens)
    text = reply_text(body)
    parsed = Parsed(meta.get("mode"), meta.get("reasoning", ""), meta.get("answer"), bool(meta.get("well_formed")),
                    meta.get("problem", ""))
    return Generation("", text, bool(meta.get("forced")), dict(meta.get("p_mode") or {}), parsed, tokens,
                      meta.get("marker_mass"))


async def detect(client: ChatClient, cfg: EndpointConfig) -> GeneratingProtocol:
    """The protocol to ask in, chosen once: a PersonaDual server says so on ``GET /health`` (the modes
    protocol, with its mode names); anything else is plain."""
    served = await client.served_models()  # refuses a bad key now, not after the first item
    if served is not None and cfg.model not in served:
        raise EndpointError(f"{cfg.url} does not serve model {cfg.model!r}; it serves: {', '.join(served) or 'nothing'}")
    health = await client.health()
    modes = health.get("modes") if isinstance(health, dict) else None
    is_personadual = isinstance(modes, list) and len(modes) >= 2
    if cfg.protocol == "modes" and not is_personadual:
        raise EndpointError(f"{cfg.url} is not a PersonaDual server (its /health lists no modes): use --protocol plain")
    if cfg.protocol == "plain" or not is_personadual:
        return PlainProtocol()
    return ModesProtocol(mode_names=list(modes))


def _pin(out: Path, cfg: EndpointConfig, protocol: GeneratingProtocol) -> None:
    """Record what this folder evaluates; refuse to continue another model's evaluation. The URL is
    recorded but may change (a server restarted on another port serves the same answers)."""
    pin = {"url": cfg.url, "model": cfg.model, "protocol": protocol.name, "modes": protocol.mode_names,
           "drop_persona": cfg.drop_persona, "max_tokens": cfg.max_tokens}
    path = out / "endpoint.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in pin if k != "url" and old.get(k) != pin[k]]
        if changed:
            raise EndpointError(f"{out} holds an evaluation with other settings ({', '.join(changed)}: "
                                f"{ {k: old.get(k) for k in changed} }); use another --out")
    write_text_atomic(path, json.dumps(pin, indent=2, sort_keys=True) + "\n")


async def _ask_all(cfg: EndpointConfig, client: ChatClient, todo: list[tuple[Item, str]], protocol: GeneratingProtocol,
                   log_file: Appender, already: int) -> list[str]:
    """Ask every pending request, appending each reply as it arrives; returns why each failed one failed."""
    from tqdm import tqdm

    failed = []
    bar = tqdm(total=len(todo) + already, initial=already, desc="eval", unit="req", disable=not cfg.progress)

    async def handle(job: tuple[Item, str]) -> None:
        item, run = job
        messages, extra = request_body(item, run, protocol, cfg)
        try:
            body = await client.complete_body(messages, 0.0, cfg.max_tokens, extra)
        except TeacherFatal:
            raise
        except TeacherError as e:
            failed.append(str(e))
            log.warning("%s (%s): failed after retries: %s", item.id, run, e)
            return
        log_file.write({"id": item.id, "run": run, "body": body})
        bar.update(1)

    try:
        await for_each(todo, cfg.concurrency, handle)
    except TeacherFatal as e:
        raise EndpointError(str(e)) from None
    finally:
        bar.close()
    return failed


def evaluate_endpoint(cfg: EndpointConfig, data: str, out_dir: str, name: str | None = None) -> dict:
    """Evaluate ``cfg.model`` behind ``cfg.url`` on ``data``; resumable (see the module docstring)."""
    items = read_split(data, "test")[: cfg.limit]
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{data}: item ids must be unique to resume by id")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "responses.jsonl"

    async def go() -> tuple[GeneratingProtocol, list[tuple[Item, str]], list[str]]:
        async with ChatClient(cfg.url, cfg.model, cfg.api_key, cfg.concurrency, cfg.retries, cfg.timeout) as client:
            try:
                protocol = await detect(client, cfg)
            except TeacherFatal as e:
                raise EndpointError(str(e)) from None
            _pin(out, cfg, protocol)
            done = {(r["id"], r["run"]) for r in repair(log_path)}
            wanted = requests_for(items, protocol, cfg)
            todo = [(it, run) for it, run in wanted if (it.id, run) not in done]
            with Appender(log_path) as log_file:
                failed = await _ask_all(cfg, client, todo, protocol, log_file, len(wanted) - len(todo))
            return protocol, wanted, failed

    protocol, wanted, failed = asyncio.run(go())
    if failed:
        raise EndpointError(f"{len(failed)} request(s) failed after retries (the first: {failed[0]}). Rerun the same "
                            f"command: the replies in {log_path} are kept and not asked again")
    replies = {(r["id"], r["run"]): r for r in repair(log_path)}
    by_run: dict[str, list] = {}
    for it, run in wanted:
        by_run.setdefault(run, []).append(protocol.read(it, generation_of(replies[it.id, run], protocol), run))
    runs = protocol.assemble(by_run)  # one forced mode asked: reported as the auto run, as in-process
    about = {"model": cfg.model, "endpoint": cfg.url, "data": str(data), "requested_mode": cfg.mode,
             "drop_persona": cfg.drop_persona, "chat_template_kwargs": cfg.chat_template_kwargs,
             "name": name or cfg.model, "requests": {"concurrency": cfg.concurrency, "max_tokens": cfg.max_tokens}}
    return write_results(out, runs, protocol, about)

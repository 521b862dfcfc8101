"""Chat messages -> the model's prompt, and a `Generation` -> OpenAI response bodies.

The persona is the request's ``persona`` field, or else the text of its system (and developer)
messages. It is put into the last user turn with the paper's template ("I am {persona}, my question
is: ..."), exactly as the model saw it in training. When ``persona`` is given, system messages stay
system messages. Earlier turns are passed through to the chat template unchanged.
"""

from __future__ import annotations

import time
import uuid

from .. import modes as modes_lib
from .schemas import APIError, Message


def build_prompt(tokenizer, messages: list[Message], persona: str | None = None,
                 chat_template_kwargs: dict | None = None) -> str:
    """The request's messages -> the prompt text, rendered with the model's template settings
    (``chat_template_kwargs``: the server's, updated by the request's own)."""
    system = [m.text for m in messages if m.role in ("system", "developer")]
    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise APIError(400, "the last non-system message must come from the user", param="messages",
                       code="invalid_value")
    if not turns[-1].text.strip():
        raise APIError(400, "the last user message is empty", param="messages", code="invalid_value")
    system_prompt = None
    if persona is None:
        persona = "\n".join(s.strip() for s in system if s.strip())
    else:
        system_prompt = "\n".join(system) or None
    last = modes_lib.render_messages(turns[-1].text, persona.strip() or None)[-1]
    chat = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    chat += [{"role": m.role, "content": m.text} for m in turns[:-1]] + [last]
    return modes_lib.apply_template(tokenizer, chat, chat_template_kwargs)


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def answer_text(gen) -> str:
    """The final answer, or (when the response has no readable answer block) what the model wrote. A plain
    model (no mode, no p(mode)) is a chat model: its reply as written."""
    if gen.mode is None and not gen.p_mode:
        return gen.text.strip()
    return gen.parsed.answer if gen.parsed.answer is not None else gen.parsed.reasoning


def finish_reason(gen, max_tokens: int) -> str:
    done = modes_lib.ANSWER_CLOSE in gen.text or gen.num_tokens < max_tokens
    return "stop" if done else "length"


def metadata(gen, include_reasoning: bool) -> dict:
    """The ``personadual`` field: chosen mode, p(mode | prompt), whether it was forced, the format check,
    and the parsed answer (None when the response has none; ``content`` then carries what the model wrote)."""
    meta = {"mode": gen.mode, "p_mode": {k: round(v, 6) for k, v in gen.p_mode.items()},
            "forced": gen.forced, "well_formed": gen.parsed.well_formed, "answer": gen.parsed.answer}
    if gen.marker_mass is not None:  # p(any marker | prompt): low means the model's markers leaked
        meta["marker_mass"] = round(gen.marker_mass, 6)
    if not gen.parsed.well_formed:
        meta["problem"] = gen.parsed.reason
    if include_reasoning:
        meta["reasoning"] = gen.parsed.reasoning
    return meta


def usage(prompt_tokens: int, gen) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": gen.num_tokens,
            "total_tokens": prompt_tokens + gen.num_tokens}


def completion_body(gen, *, model: str, prompt_tokens: int, max_tokens: int, include_reasoning: bool) -> dict:
    message = {"role": "assistant", "content": answer_text(gen)}
    if include_reasoning:
        message["reasoning_content"] = gen.parsed.reasoning  # the field vLLM's reasoning parsers use
    return {
        "id": new_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(gen, max_tokens)}],
        "usage": usage(prompt_tokens, gen),
        "personadual": metadata(gen, include_reasoning),
    }


def stream_events(gen, *, model: str, prompt_tokens: int, max_tokens: int, include_reasoning: bool,
                  include_usage: bool):
    """SSE lines in OpenAI's chunk format: role, (reasoning,) content, finish + metadata, [usage,] [DONE].

    The engine decodes a whole batch at once, so the chunks follow each other as soon as the request's
    batch is done: the stream has the protocol of token streaming, not its latency.
    """
    import json

    cid, created = new_id(), int(time.time())

    def chunk(delta: dict | None, finish: str | None = None, **extra) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **extra}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    if include_reasoning:
        yield chunk({"reasoning_content": gen.parsed.reasoning})
    yield chunk({"content": answer_text(gen)})
    yield chunk({}, finish_reason(gen, max_tokens), personadual=metadata(gen, include_reasoning))
    if include_usage:
        yield chunk(None, usage=usage(prompt_tokens, gen))
    yield "data: [DONE]\n\n"

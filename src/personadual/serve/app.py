"""The FastAPI app: ``create_app(engine, ServeConfig(...))``.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``. Every error, including
404/405 and body-size refusals, is answered in OpenAI's shape ``{"error": {message, type, param,
code}}``. The chat route reads the body itself (bounded by ``max_request_bytes``) and validates it
with `schemas.ChatRequest`, so a bad request is a 400 that names the field, never a 422 or a 500.
"""

from __future__ import annotations

import copy
import hmac
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import GenerationConfig
from ..modes import AUTO
from ..tokenization import prompt_ids
from . import prompting
from .batcher import MicroBatcher, Overloaded
from .config import ServeConfig
from .schemas import APIError, parse_request

log = logging.getLogger(__name__)


def create_app(engine, config: ServeConfig | None = None) -> FastAPI:
    cfg = config or ServeConfig()
    batcher = MicroBatcher(engine.generate, cfg.max_batch_size, cfg.batch_wait_ms, cfg.max_queue)
    # The engine uses its tokenizer in the worker thread (padding on); a HF fast tokenizer is not
    # thread-safe, so prompts are rendered and counted with a copy of our own on the event loop.
    tokenizer = _own_copy(engine.tokenizer)
    mode_names = [AUTO, *engine.mode_names]  # a plain model (no markers): auto only
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        yield
        await batcher.close()

    app = FastAPI(title="PersonaDual", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.batcher, app.state.config = batcher, cfg

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e: StarletteHTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail), code=None).body(), status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e: RequestValidationError):
        return JSONResponse(APIError(400, f"invalid request: {e.errors()}").body(), status_code=400)

    def authorize(request: Request) -> None:
        if cfg.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": cfg.model_name, "modes": engine.mode_names,
                "queued": batcher.pending, "batching": batcher.stats.as_dict()}

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "created": started,
                                            "owned_by": "personadual"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        req = parse_request(await _read_body(request, cfg.max_request_bytes))
        if req.model is not None and req.model != cfg.model_name:
            raise APIError(404, f"model {req.model!r} is not served here; this server serves {cfg.model_name!r}",
                           param="model", code="model_not_found")
        if req.mode not in mode_names:
            raise APIError(400, f"unknown mode {req.mode!r}; expected one of {', '.join(mode_names)}",
                           param="mode", code="invalid_value")
        max_tokens = req.requested_max_tokens() or cfg.default_max_tokens
        if max_tokens > cfg.max_tokens_cap:
            raise APIError(400, f"max_tokens={max_tokens} is above this server's cap of {cfg.max_tokens_cap}",
                           param="max_tokens", code="invalid_value")
        template_kwargs = {**engine.chat_template_kwargs, **(req.chat_template_kwargs or {})}
        try:
            prompt = prompting.build_prompt(tokenizer, req.messages, req.persona, template_kwargs)
        except APIError:
            raise
        except Exception as e:  # a template that rejects these settings or messages
            raise APIError(400, f"the chat template could not render this request: {e}", param="chat_template_kwargs",
                           code="invalid_value") from None
        prompt_tokens = len(prompt_ids(tokenizer, [prompt])[0])  # the ids the engine will run
        if cfg.max_context_tokens is not None and prompt_tokens + max_tokens > cfg.max_context_tokens:
            raise APIError(400, f"this model's context is {cfg.max_context_tokens} tokens; the prompt has "
                           f"{prompt_tokens} and max_tokens asks for {max_tokens} more: shorten the messages "
                           "or lower max_tokens", param="messages", code="context_length_exceeded")
        gen_cfg = GenerationConfig(max_new_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p,
                                   batch_size=cfg.max_batch_size, seed=req.seed)
        try:
            gen = await batcher.submit(prompt, req.mode, gen_cfg)
        except Overloaded as e:
            raise APIError(503, f"server busy: {e}; retry later", type="server_error", code="overloaded") from None
        except Exception:
            log.exception("generation failed")
            raise APIError(500, "generation failed (see the server log)", type="server_error") from None
        kw = dict(model=cfg.model_name, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                  include_reasoning=req.include_reasoning)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(prompting.stream_events(gen, include_usage=include_usage, **kw),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return JSONResponse(prompting.completion_body(gen, **kw))

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = APIError(413, f"request body larger than this server's limit of {limit} bytes",
                       code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def _own_copy(tokenizer):
    try:
        return copy.deepcopy(tokenizer)
    except Exception:  # an exotic tokenizer that cannot be copied: share it (and warn)
        log.warning("could not copy the tokenizer; sharing it with the engine thread")
        return tokenizer

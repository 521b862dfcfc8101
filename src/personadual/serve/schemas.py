"""The request body of /v1/chat/completions, and errors in OpenAI's shape.

Fields are strict (no "0.5" -> 0.5 or "yes" -> True coercion): a wrong type is a 400 that names the
field. Fields OpenAI defines but we do not use (``user``, ``logit_bias``, ...) are ignored, as most
OpenAI-compatible servers do; ``n > 1``, a non-empty ``stop`` and non-text content parts are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class APIError(Exception):
    """An HTTP error answered as ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape)."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None  # when given, must be the served model's id
    messages: list[Message] = Field(min_length=1)
    persona: str | None = None  # PersonaDual extension; else the system message(s) are the persona
    mode: str = "auto"  # auto, or a mode name to force (checked against the engine's ModeSet)
    chat_template_kwargs: dict | None = None  # vLLM's extension: updates the server's template settings
    include_reasoning: bool = False  # PersonaDual extension: return the reasoning too
    temperature: float = Field(0.0, ge=0.0, le=2.0)  # 0 = greedy (our default, unlike OpenAI's 1)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    seed: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only n=1 is supported")
        return v

    @field_validator("stop")
    @classmethod
    def _no_stop(cls, v):
        if v:
            raise ValueError("custom stop sequences are not supported: generation ends with the answer block")
        return v

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


_CODES = {"missing": "missing_required_parameter"}


def validation_error(e: ValidationError) -> APIError:
    """A pydantic error -> one 400 naming every bad field; `param` is the first one."""
    errs = e.errors(include_url=False)
    parts, params = [], []
    for err in errs:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        params.append(loc)
        parts.append(f"{loc}: {'field required' if err['type'] == 'missing' else err['msg']}")
    first = errs[0]["type"] if errs else ""
    code = _CODES.get(first, "invalid_type" if first.endswith("_type") else "invalid_value")
    return APIError(400, "invalid request: " + "; ".join(parts), param=params[0] if params else None, code=code)


def parse_request(raw: bytes) -> ChatRequest:
    import json

    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(obj).__name__}", code="invalid_type")
    try:
        return ChatRequest.model_validate(obj)
    except ValidationError as e:
        raise validation_error(e) from None

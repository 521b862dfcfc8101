"""A small async client for any OpenAI-compatible chat endpoint: a request limit, retries, backoff.

Retried: connection errors, timeouts, 408/409/425/429 and 5xx, after ``backoff * 2**attempt``
seconds (capped at ``max_backoff``, shortened by up to ``jitter`` at random, never shorter than a
``Retry-After`` header asks). Not retried: other 4xx (a bad request stays bad). Fatal for the whole
run: 401/403/404 (wrong key, model or URL: every other request would fail the same way).

When the endpoint is a PersonaDual server (the reply has a ``personadual`` field), the reply text is
rebuilt as marker + reasoning + answer block, since such a server puts only the final answer in
``content`` (and the reasoning in the ``personadual`` field when asked with ``include_reasoning``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from ... import modes as modes_lib

RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL = {401, 403, 404}


class TeacherError(RuntimeError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TeacherFatal(TeacherError):
    """An error every request would hit (bad key, unknown model, wrong URL): stop the run."""


def chat_url(endpoint: str) -> str:
    """``http://host:8000/v1`` (a base URL, as the openai client takes) -> ``.../v1/chat/completions``."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


@dataclass
class ChatClient:
    endpoint: str
    model: str
    api_key: str | None = None
    concurrency: int = 8  # most requests in flight
    retries: int = 4  # extra attempts after the first
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_backoff: float = 60.0
    jitter: float = 0.25  # delays are shortened by up to this fraction, at random
    timeout: float = 120.0
    extra_body: dict | None = None  # merged into every request (e.g. {"include_reasoning": true})
    sleep: object = asyncio.sleep  # injectable for tests

    def __post_init__(self):
        if self.concurrency < 1 or self.retries < 0 or self.backoff < 0:
            raise ValueError("need concurrency >= 1, retries >= 0, backoff >= 0")
        self.url = chat_url(self.endpoint)
        self.retried = 0  # retries done so far, for the summary
        self._sem: asyncio.Semaphore | None = None
        self._http = None

    async def __aenter__(self) -> "ChatClient":
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=self.timeout,
                                       limits=httpx.Limits(max_connections=self.concurrency))
        self._sem = asyncio.Semaphore(self.concurrency)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.aclose()

    async def complete(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 1024,
                       extra: dict | None = None) -> str:
        """The reply text of one chat completion, after retries; raises `TeacherError`."""
        import httpx

        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens,
                **(extra or {}), **(self.extra_body or {})}
        for attempt in range(self.retries + 1):
            retry_after = 0.0
            try:
                async with self._sem:
                    r = await self._http.post(self.url, json=body)
            except httpx.TransportError as e:  # refused, reset, timed out
                err = TeacherError(f"{type(e).__name__}: {e}")
            else:
                if r.status_code == 200:
                    try:
                        return reply_text(r.json())
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        err = TeacherError(f"malformed reply ({type(e).__name__}: {e}): {r.text[:200]!r}", 200)
                else:
                    err = _http_error(r)
                    if r.status_code in FATAL:
                        raise TeacherFatal(str(err), r.status_code)
                    if r.status_code not in RETRYABLE:
                        raise err
                    retry_after = _seconds(r.headers.get("retry-after"))
            if attempt == self.retries:
                raise err
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (1 - self.jitter * random.random())
            self.retried += 1
            await self.sleep(max(delay, min(retry_after, self.max_backoff)))
        raise AssertionError("unreachable")


def reply_text(body: dict) -> str:
    msg = body["choices"][0]["message"]
    content = msg.get("content") or ""
    meta = body.get("personadual")
    if isinstance(meta, dict) and meta.get("mode"):
        marker = modes_lib.DEFAULT_MODES.get(meta["mode"]).marker
        return f"{marker}\n{meta.get('reasoning', '')}\n{modes_lib.format_answer(content)}"
    return content


def _http_error(r) -> TeacherError:
    try:
        detail = r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = r.text[:200]
    return TeacherError(f"HTTP {r.status_code} from {r.request.url}: {detail}", r.status_code)


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0  # an HTTP date: ignore it, the backoff applies

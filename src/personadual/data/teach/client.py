"""An async client for any OpenAI-compatible chat endpoint, on the official `openai` client.

The `openai` client does the retrying: connection errors, timeouts, 408/409/429 and 5xx are retried
up to ``retries`` times with its exponential backoff (0.5 s doubling to 8 s, with jitter), or after
the delay a ``Retry-After`` / ``retry-after-ms`` header asks for. Other 4xx are not retried (a bad
request stays bad). What this module adds:

- a bound on requests in flight (``concurrency``), shared by every caller of one client;
- errors that say what to do: `TeacherFatal` for what every other request would hit too (401/403: the
  key; 404: the model or the URL, with the models the endpoint does serve), `TeacherError` for one
  request that failed after its retries (a rate limit says so);
- the reply as the body dict, so a PersonaDual server's ``personadual`` field (mode, p(mode)) is kept.

When the endpoint is a PersonaDual server (the reply has a ``personadual`` field), `reply_text`
rebuilds the text as marker + reasoning + answer block, since such a server puts only the final
answer in ``content`` (and the reasoning in the ``personadual`` field when asked with
``include_reasoning``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ... import modes as modes_lib


class TeacherError(RuntimeError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TeacherFatal(TeacherError):
    """An error every request would hit (bad key, unknown model, wrong URL): stop the run."""


def base_url(endpoint: str) -> str:
    """``http://host:8000/v1`` or ``.../v1/chat/completions`` -> the base URL the openai client takes."""
    url = endpoint.rstrip("/")
    return url[: -len("/chat/completions")] if url.endswith("/chat/completions") else url


@dataclass
class ChatClient:
    endpoint: str
    model: str
    api_key: str | None = None
    concurrency: int = 8  # most requests in flight
    retries: int = 4  # extra attempts after the first (the openai client's max_retries)
    timeout: float = 120.0  # seconds per attempt
    extra_body: dict | None = None  # merged into every request (e.g. {"include_reasoning": true})

    def __post_init__(self):
        if self.concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("need concurrency >= 1, retries >= 0, timeout > 0")
        self.base_url = base_url(self.endpoint)
        self.calls = self.attempts = 0
        self._sem: asyncio.Semaphore | None = None
        self._api = None

    @property
    def retried(self) -> int:
        """Retries done so far (attempts beyond the first of each call), for summaries."""
        return self.attempts - self.calls

    async def __aenter__(self) -> "ChatClient":
        import openai

        async def count(request):
            self.attempts += 1

        http = openai.DefaultAsyncHttpxClient(
            limits=_limits(self.concurrency), event_hooks={"request": [count]})
        # A local server needs no key, but the openai client insists on one: send a placeholder.
        self._api = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "no-key", max_retries=self.retries,
                                       timeout=self.timeout, http_client=http)
        self._sem = asyncio.Semaphore(self.concurrency)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._api.close()

    async def complete_body(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 1024,
                            extra: dict | None = None) -> dict:
        """One chat completion's reply body (a dict, extension fields included), after retries."""
        import openai

        body = {**(extra or {}), **(self.extra_body or {})}
        self.calls += 1
        try:
            async with self._sem:
                reply = await self._api.chat.completions.create(
                    model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
                    extra_body=body or None)
        except openai.APIStatusError as e:
            raise await self._status_error(e) from None
        except openai.APITimeoutError:
            raise TeacherError(f"no reply from {self.base_url} within {self.timeout:g} s "
                               f"(after {self.retries} retries)") from None
        except openai.APIConnectionError as e:
            raise TeacherError(f"cannot reach {self.base_url} ({e.__cause__ or e}; after {self.retries} retries): "
                               "is the server up?") from None
        return reply.model_dump()

    async def complete(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 1024,
                       extra: dict | None = None) -> str:
        """The reply text of one chat completion, after retries; raises `TeacherError`."""
        body = await self.complete_body(messages, temperature, max_tokens, extra)
        try:
            return reply_text(body)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise TeacherError(f"malformed reply ({type(e).__name__}: {e}): {str(body)[:200]!r}", 200) from None

    async def served_models(self) -> list[str] | None:
        """The model ids ``GET /models`` lists, or None when the endpoint does not answer it."""
        import openai

        try:
            return [m.id async for m in self._api.models.list()]
        except openai.APIStatusError as e:
            if e.status_code in (401, 403):
                raise await self._status_error(e) from None
            return None
        except openai.APIError:
            return None

    async def health(self) -> dict | None:
        """The JSON of ``GET /health`` beside the API root (a PersonaDual server lists its modes there),
        or None when there is none: vLLM answers it with an empty body, hosted APIs not at all."""
        import httpx2

        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        try:
            async with httpx2.AsyncClient(timeout=min(self.timeout, 30.0)) as http:
                r = await http.get(root + "/health")
            return r.json() if r.status_code == 200 else None
        except (httpx2.HTTPError, ValueError):
            return None

    async def _status_error(self, e) -> TeacherError:
        status, detail = e.status_code, _detail(e)
        where = f"{self.base_url} (model {self.model!r})"
        if status in (401, 403):
            return TeacherFatal(f"HTTP {status} from {where}: authentication refused ({detail}): check the API key",
                                status)
        if status == 404:
            if _names_a_model(e):
                served = await self.served_models()
                listed = f"; it serves: {', '.join(served)}" if served else ""
                return TeacherFatal(f"HTTP 404 from {where}: unknown model ({detail}){listed}", status)
            return TeacherFatal(f"HTTP 404 from {self.base_url}/chat/completions ({detail}): check the URL "
                                "(an OpenAI-compatible base URL usually ends in /v1)", status)
        if status == 429:
            tries = f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}"
            return TeacherError(f"HTTP 429 from {where}: rate limited, still after {tries} ({detail}): "
                                "lower the concurrency, or rerun later", status)
        return TeacherError(f"HTTP {status} from {where}: {detail}", status)


def _limits(concurrency: int):
    import httpx2

    return httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


def _error_object(e) -> dict:
    """The ``{"message", "code", "param"}`` object of an error reply (OpenAI's shape, or a bare one)."""
    body = e.body if isinstance(e.body, dict) else {}
    error = body.get("error", body)
    return error if isinstance(error, dict) else {}


def _detail(e) -> str:
    return str(_error_object(e).get("message") or e.message or e.response.text[:200])


def _names_a_model(e) -> bool:
    """A 404 about the model (vLLM, `personadual serve`, OpenAI) rather than about the path."""
    error = _error_object(e)
    return error.get("code") == "model_not_found" or error.get("param") == "model" or "model" in _detail(e).lower()


def reply_text(body: dict) -> str:
    msg = body["choices"][0]["message"]
    content = msg.get("content") or ""
    meta = body.get("personadual")
    if isinstance(meta, dict) and meta.get("mode"):
        marker = modes_lib.DEFAULT_MODES.get(meta["mode"]).marker
        return f"{marker}\n{meta.get('reasoning', '')}\n{modes_lib.format_answer(content)}"
    return content


async def for_each(jobs: list, concurrency: int, handle) -> None:
    """``await handle(job)`` for every job, at most ``concurrency`` at a time, in order of the list.

    A `TeacherFatal` from any job cancels the others and is raised (every other request would fail the
    same way); `handle` deals with anything else itself (a failed job is retried on the next run).
    """
    queue = iter(jobs)  # one shared iterator: each job goes to exactly one worker

    async def worker():
        for job in queue:
            await handle(job)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(concurrency, max(1, len(jobs)))):
                tg.create_task(worker())
    except* TeacherFatal as eg:
        raise eg.exceptions[0] from None

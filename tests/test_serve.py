"""The OpenAI-compatible server: a real uvicorn subprocess on loopback, driven by the official client."""

import asyncio

import httpx
import openai
import pytest
import typer
from typer.testing import CliRunner

from personadual.data import read_items
from personadual.serve.batcher import MicroBatcher, Overloaded
from personadual.serve.process import ServerProcess

KEY = "test-key"
MODEL = "model"  # served name = the model directory's name


@pytest.fixture(scope="module")
def server(sft_model):
    with ServerProcess(sft_model, "--threads", "1", "--batch-wait-ms", "30", "--max-tokens-cap", "128",
                       "--max-request-bytes", "20000", api_key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def items(bench_dir):
    return [it for it in read_items(bench_dir / "val.jsonl") if it.persona][:4]


def chat(client, it, **kw):
    kw.setdefault("max_tokens", 64)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": it.persona},
                                                                 {"role": "user", "content": it.question}], **kw)


def test_health_and_models(server, client):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # open without a key
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_auto_mode_reports_the_models_choice(client, items):
    for it in items:
        r = chat(client, it)
        meta = r.model_extra["personadual"]
        assert meta["mode"] in ("general", "personalized") and meta["forced"] is False
        assert abs(sum(meta["p_mode"].values()) - 1) < 1e-4 and 0 < meta["marker_mass"] <= 1
        assert meta["mode"] == max(meta["p_mode"], key=meta["p_mode"].get)  # greedy: the likelier marker
        assert "reasoning" not in meta and r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_forced_modes_and_reasoning(client, items):
    for mode in ("general", "personalized"):
        r = chat(client, items[0], extra_body={"mode": mode, "include_reasoning": True})
        meta = r.model_extra["personadual"]
        assert meta["mode"] == mode and meta["forced"] is True
        assert isinstance(meta["reasoning"], str)
        assert r.choices[0].message.model_extra["reasoning_content"] == meta["reasoning"]


def test_persona_field_is_the_same_as_a_system_message(client, items):
    it = items[1]
    by_system = chat(client, it)
    by_field = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": it.question}],
                                              max_tokens=64, extra_body={"persona": it.persona})
    assert by_field.choices[0].message.content == by_system.choices[0].message.content
    assert by_field.model_extra["personadual"] == by_system.model_extra["personadual"]


def test_streaming_matches_the_plain_answer(server, client, items):
    plain = chat(client, items[2])
    chunks = list(chat(client, items[2], stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].model_extra["personadual"] == plain.model_extra["personadual"]
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens
    raw = httpx.post(server.base_url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"messages": [{"role": "user", "content": items[2].question}], "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


MSG = [{"role": "user", "content": "Which is larger? A 3 B 5"}]
BAD = [  # body, status, param, code
    ({"model": MODEL}, 400, "messages", "missing_required_parameter"),
    ({"messages": "hello"}, 400, "messages", "invalid_type"),
    ({"messages": [{"role": "user", "content": 7}]}, 400, "messages.0.content.str", "invalid_type"),
    ({"messages": MSG, "temperature": "hot"}, 400, "temperature", "invalid_type"),
    ({"messages": MSG, "max_tokens": 100000}, 400, "max_tokens", "invalid_value"),
    ({"messages": MSG, "mode": "creative"}, 400, "mode", "invalid_value"),
    ({"messages": [{"role": "user", "content": "A B C " * 1000}]}, 400, "messages", "context_length_exceeded"),
    ({"messages": [{"role": "user", "content": "x" * 30000}]}, 413, None, "request_too_large"),
    ({"messages": MSG, "model": "gpt-9"}, 404, "model", "model_not_found"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages", "invalid_value"),
]


@pytest.mark.parametrize("body,status,param,code", BAD)
def test_bad_requests_get_openai_shaped_errors(server, body, status, param, code):
    r = httpx.post(server.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")


def test_the_openai_client_raises_its_own_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=MSG, extra_body={"mode": "creative"})
    assert e.value.param == "mode" and "creative" in e.value.message
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=MODEL, messages=[])


def test_api_key_is_enforced(server):
    for key in ("wrong", None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        for r in (httpx.get(server.base_url + "/models", headers=headers),
                  httpx.post(server.base_url + "/chat/completions", json={"messages": MSG}, headers=headers)):
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()


def test_concurrent_requests_share_batches_on_the_server(server, bench_dir):
    # prompts of many lengths: prompts are counted on the event loop while a batch is tokenized
    # (padded) in the worker thread, which must not share one (thread-unsafe) tokenizer
    questions = [it.question for it in read_items(bench_dir / "val.jsonl")][:48]

    async def burst():
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)
        return await asyncio.gather(*(c.chat.completions.create(model=MODEL, max_tokens=16, messages=[
            {"role": "user", "content": q}]) for q in questions), return_exceptions=True)

    before = httpx.get(server.url + "/health").json()["batching"]
    results = asyncio.run(burst())
    assert [r for r in results if isinstance(r, Exception)] == []
    after = httpx.get(server.url + "/health").json()["batching"]
    assert after["requests"] - before["requests"] == len(questions)
    assert after["batches"] - before["batches"] < len(questions)  # requests shared generate calls


class FakeEngine:
    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def generate(self, prompts, modes, config):
        self.calls.append((list(prompts), list(modes), config.temperature))
        if self.fail:
            raise RuntimeError("boom")
        return [f"{p}|{m}" for p, m in zip(prompts, modes)]


class Cfg:
    def __init__(self, temperature=0.0, seed=None):
        self.max_new_tokens, self.temperature, self.top_p, self.stop, self.seed = 16, temperature, 1.0, (), seed


def test_batcher_batches_concurrent_requests_by_settings():
    eng = FakeEngine()

    async def go():
        b = MicroBatcher(eng.generate, max_batch_size=8, wait_ms=50)
        jobs = [b.submit(f"p{i}", "general" if i % 2 else "auto", Cfg(temperature=0.0 if i < 14 else 0.7))
                for i in range(20)]
        jobs += [b.submit(f"s{i}", "auto", Cfg(seed=1)) for i in range(2)]
        out = await asyncio.gather(*jobs)
        await b.close()
        return out, b.stats.as_dict()

    out, stats = asyncio.run(go())
    assert out[:20] == [f"p{i}|{'general' if i % 2 else 'auto'}" for i in range(20)]  # each gets its own result
    sizes = [len(p) for p, _, _ in eng.calls]
    assert sum(sizes) == 22 and max(sizes) == 8 and stats["batches"] == len(sizes) < 22
    for prompts, _, temp in eng.calls:  # never mixes settings; seeded requests run alone
        assert {int(p[1:]) >= 14 for p in prompts if p[0] == "p"} <= {temp > 0}
        assert all(p[0] != "s" for p in prompts) or len(prompts) == 1


def test_batcher_errors_and_overload():
    async def go():
        b = MicroBatcher(FakeEngine(fail=True).generate, max_batch_size=4, wait_ms=10, max_pending=3)
        res = await asyncio.gather(*(b.submit("p", "auto", Cfg()) for _ in range(4)), return_exceptions=True)
        await b.close()
        return res

    res = asyncio.run(go())
    assert sum(isinstance(r, RuntimeError) and not isinstance(r, Overloaded) for r in res) == 3
    assert sum(isinstance(r, Overloaded) for r in res) == 1


def test_chat_command_shows_the_mode(sft_model, items):
    from personadual.serve.commands import chat_command

    app = typer.Typer()
    app.command()(chat_command)
    script = f"/persona {items[0].persona}\n{items[0].question}\n/mode general\n{items[0].question}\n/mode silly\n/quit\n"
    r = CliRunner().invoke(app, ["--model", str(sft_model), "--max-tokens", "48"], input=script)
    assert r.exit_code == 0, r.output
    assert "p(mode): general=" in r.output and "[general (forced)]" in r.output
    assert r.output.count("answer:") == 2 and "unknown mode 'silly'" in r.output


def test_a_model_without_markers_is_served_as_a_plain_chat_model(tmp_path):
    """A base or instruct model straight from `model get` has no markers: the server answers as a chat model,
    with no mode and no p(mode), instead of refusing it."""
    from fastapi.testclient import TestClient

    from personadual.models.real_vocab import RealVocabConfig, init_model
    from personadual.serve.app import create_app
    from personadual.serve.commands import open_engine

    init_model(tmp_path / "plain", RealVocabConfig())
    engine = open_engine(tmp_path / "plain")
    assert engine.modes is None and engine.mode_names == []
    with TestClient(create_app(engine)) as http:
        assert http.get("/health").json()["modes"] == []
        body = http.post("/v1/chat/completions", json={"model": "personadual", "max_tokens": 6, "messages": [
            {"role": "system", "content": "a chef"}, {"role": "user", "content": "What is 2 + 2?"}]}).json()
        meta = body["personadual"]
        assert (meta["mode"], meta["p_mode"], meta["forced"]) == (None, {}, False)
        assert body["choices"][0]["message"]["content"] == engine.generate(
            [engine.render_prompt("What is 2 + 2?", "a chef")], "auto", _cfg(6))[0].text.strip()
        refused = http.post("/v1/chat/completions", json={"model": "personadual", "mode": "general", "messages": [
            {"role": "user", "content": "hi"}]})
        assert refused.status_code == 400 and "mode" in refused.text


def _cfg(max_new_tokens):
    from personadual.engine import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens)

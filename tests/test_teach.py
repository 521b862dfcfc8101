"""`data teach`: end to end against our own server (with a kill and a rerun), and unit tests against a
scripted fake endpoint (retries, errors, labelling, judge, resume)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fake_endpoint import FakeEndpoint

from personadual.data import Item, read_items, write_items
from personadual.serve.process import ServerProcess, free_port
from personadual.data.teach.client import ChatClient, TeacherError, TeacherFatal
from personadual.files import Appender, repair
from personadual.data.teach.teach import TeachConfig, teach


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def ids_of(path):
    return [json.loads(x)["id"] for x in lines(path)]


@pytest.fixture(scope="module")
def teacher(sft_model):
    # batch_wait_ms slows every request down a little, so the kill below lands mid-run
    with ServerProcess(sft_model, "--threads", "1", "--batch-wait-ms", "40") as srv:
        yield srv


@pytest.mark.slow
def test_teach_end_to_end_with_kill_and_rerun(teacher, bench_dir, tmp_path):
    items = read_items(bench_dir / "val.jsonl")[::2]  # every condition, personalized items included
    write_items(tmp_path / "in.jsonl", items)
    out, rejected = tmp_path / "out.jsonl", tmp_path / "out.jsonl.rejected.jsonl"
    cmd = [sys.executable, "-m", "personadual.data.teach", "--endpoint", teacher.base_url, "--model", "model",
           "--in", str(tmp_path / "in.jsonl"), "--out", str(out), "--personadual-server", "--concurrency", "2",
           "--max-tokens", "48", "--retries", "1", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(lines(out)) + len(lines(rejected)) < 8:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p: p.read_bytes() for p in (out, rejected)}
    done_before = set(ids_of(out)) | set(ids_of(rejected))
    assert 8 <= len(done_before) < len(items), "the kill must land mid-run"

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["skipped"] == len(done_before)  # finished items are not redone
    assert summary["total"] == len(items) and summary["failed"] == 0
    assert summary["kept"] + summary["dropped"] == len(items) - len(done_before)
    for p, old in before.items():  # nothing finished before the kill is lost or rewritten
        complete = old[: old.rfind(b"\n") + 1]
        assert p.read_bytes().startswith(complete)

    kept, dropped = ids_of(out), ids_of(rejected)
    assert kept and dropped  # the tiny teacher gets some right and many wrong: both paths are exercised
    assert len(kept) + len(dropped) == len(set(kept) | set(dropped)) == len(items)
    assert set(kept) | set(dropped) == {it.id for it in items}
    by_id = {it.id: it for it in items}
    for it in read_items(out):  # every written trace is verified; the label follows the paper's rule
        assert it.traces and all(t.answer == it.gold for t in it.traces.values())
        assert it.preferred_mode == ("personalized" if "personalized" in it.traces else "general")
        assert it.persona is not None or set(it.traces) == {"general"}
        assert it.question == by_id[it.id].question and it.meta["teacher"]["model"] == "model"
    for row in map(json.loads, lines(rejected)):
        assert not any(row[m]["verified"] for m in ("general", "personalized") if m in row)


def test_repair_trims_only_a_torn_last_line(tmp_path):
    p = tmp_path / "x.jsonl"
    with Appender(p) as f:
        f.write({"id": "a"})
        f.write({"id": "b"})
    good = p.read_bytes()
    with p.open("ab") as f:
        f.write(b'{"id": "c", "tr')  # killed mid-write
    assert [r["id"] for r in repair(p)] == ["a", "b"] and p.read_bytes() == good
    p.write_bytes(good + b'{"id": "c"')  # a complete row missing its newline: not acknowledged, trimmed
    assert [r["id"] for r in repair(p)] == ["a", "b"] and p.read_bytes() == good
    p.write_bytes(b'{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="not the last line"):
        repair(p)


# ---------------------------------------------------------------------------------------------
# Against a scripted OpenAI-compatible endpoint on loopback (tests/fake_endpoint.py)


def ok(answer, mode="general", marker=True):
    head = {"general": "[General_mode]\n", "personalized": "[Personalized_mode]\n"}[mode] if marker else ""
    return 200, f'{head}because reasons\n<answer> {{"answer": "{answer}"}} </answer>', {}


FAST = {"retry-after-ms": "5"}  # the openai client honours it: retries in 5 ms instead of its 0.5 s backoff


def run_client(endpoint, retries=3, **kw):
    async def go():
        async with ChatClient(endpoint.url, "teacher", retries=retries, **kw) as c:
            try:
                return await c.complete([{"role": "user", "content": "q"}]), c.retried
            except TeacherError as e:
                return e, c.retried

    return asyncio.run(go())


def test_client_retries_what_can_recover_and_counts_the_retries():
    replies = iter([(500, "down", FAST), (503, "down", FAST), (429, "slow down", FAST), ok("B")])
    fake = FakeEndpoint(lambda body: next(replies))
    try:
        text, retried = run_client(fake)
        assert "B" in text and len(fake.requests) == 4 and retried == 3
        assert fake.requests[0]["model"] == "teacher" and fake.requests[0]["temperature"] == 0.0
    finally:
        fake.close()


@pytest.mark.parametrize("status,error,attempts,says", [
    (503, TeacherError, 3, "HTTP 503"), (429, TeacherError, 3, "rate limited, still after 2 retries"),
    (400, TeacherError, 1, "HTTP 400"), (401, TeacherFatal, 1, "check the API key"),
    (403, TeacherFatal, 1, "authentication refused")])
def test_client_gives_up_retries_only_what_can_recover(status, error, attempts, says):
    fake = FakeEndpoint(lambda body: (status, "nope", FAST))
    try:
        err, retried = run_client(fake, retries=2)
        assert type(err) is error and err.status == status and "nope" in str(err) and says in str(err)
        assert len(fake.requests) == attempts and retried == attempts - 1
    finally:
        fake.close()


def test_client_tells_an_unknown_model_from_a_wrong_url():
    fake = FakeEndpoint(lambda body: (404, f"The model `{body['model']}` does not exist.", {}), models=["qwen3-8b"])
    try:
        err, _ = run_client(fake)
        assert type(err) is TeacherFatal and "unknown model" in str(err) and "it serves: qwen3-8b" in str(err)
    finally:
        fake.close()
    fake = FakeEndpoint(lambda body: (404, "Not Found", {}))
    try:
        err, _ = run_client(fake)
        assert type(err) is TeacherFatal and "check the URL" in str(err) and "unknown model" not in str(err)
    finally:
        fake.close()


def test_client_retries_connection_errors():
    class Closed:
        url = f"http://127.0.0.1:{free_port()}/v1"

    err, retried = run_client(Closed, retries=1)
    assert isinstance(err, TeacherError) and "cannot reach" in str(err) and retried == 1


def item(id, condition, gold="A", persona="a keen gardener", kind="objective"):
    return Item(id=id, kind=kind, family="f", condition=condition, question=f"Question {id}? A x B y",
                options=["A", "B"], gold=gold, persona=None if condition == "none" else persona, source="t")


ITEMS = [item("both", "helpful"), item("general-only", "misaligned"), item("neither", "irrelevant"),
         item("no-persona", "none"), item("no-marker", "helpful"), item("pers-only", "personalized", kind="personalized"),
         item("wrong-marker", "irrelevant"), item("judged-no", "helpful"), item("flaky", "helpful")]
# (item id, mode) -> the teacher's reply
REPLIES = {("both", "general"): ok("A"), ("both", "personalized"): ok("A", "personalized"),
           ("general-only", "general"): ok("(a)."), ("general-only", "personalized"): ok("B", "personalized"),
           ("neither", "general"): ok("B"), ("neither", "personalized"): (200, "I think B.", {}),
           ("no-persona", "general"): ok("A"),
           ("no-marker", "general"): ok("B", marker=False), ("no-marker", "personalized"): ok("A", "personalized", False),
           ("pers-only", "general"): ok("B"), ("pers-only", "personalized"): ok("A", "personalized"),
           ("wrong-marker", "general"): ok("A", "personalized"), ("wrong-marker", "personalized"): ok("B", "personalized"),
           ("judged-no", "general"): ok("A"), ("judged-no", "personalized"): ok("A", "personalized"),
           ("flaky", "general"): (500, "down", FAST), ("flaky", "personalized"): ok("A", "personalized")}
EXPECTED = {"both": ("personalized", {"general", "personalized"}), "general-only": ("general", {"general"}),
            "no-persona": ("general", {"general"}), "no-marker": ("personalized", {"personalized"}),
            "pers-only": ("personalized", {"personalized"}), "judged-no": ("general", {"general"}),
            "flaky": ("personalized", {"general", "personalized"})}


def scripted(body):
    content = body["messages"][0]["content"]
    if body["model"] == "judge":  # says no to the personalized trace of "judged-no" only
        return 200, '<answer> {"answer": "%s"} </answer>' % (
            "no" if "judged-no" in content and "[Personalized_mode]" in content else "yes"), {}
    iid = content.split("Question ")[1].split("?")[0]
    mode = "personalized" if "[Personalized_mode]" in content else "general"
    return REPLIES[(iid, mode)]


def test_teach_labels_like_the_paper_and_resumes(tmp_path):
    write_items(tmp_path / "in.jsonl", ITEMS)
    fake = FakeEndpoint(scripted)
    cfg = TeachConfig(fake.url, "teacher", tmp_path / "in.jsonl", tmp_path / "out.jsonl", judge_endpoint=fake.url,
                      judge_model="judge", concurrency=3, retries=1, progress=False)
    try:
        s = teach(cfg)
        assert (s["kept"], s["dropped"], s["failed"]) == (6, 2, 1)  # "flaky" failed: its general trace errored
        assert (s["preferred_general"], s["preferred_personalized"]) == (3, 3) and s["retries"] == 1
        assert sorted(ids_of(cfg.rejected)) == ["neither", "wrong-marker"]
        asked = [b for b in fake.requests if b["model"] == "teacher" and "no-persona" in b["messages"][0]["content"]]
        assert len(asked) == 1 and "[General_mode]" in asked[0]["messages"][0]["content"]  # no persona: general only

        REPLIES[("flaky", "general")] = ok("A")  # the endpoint recovers; the rerun does only what is missing
        n = len(fake.requests)
        s2 = teach(cfg)
        assert (s2["skipped"], s2["kept"], s2["dropped"], s2["failed"]) == (8, 1, 0, 0)
        assert {b["messages"][0]["content"].split("Question ")[1].split("?")[0] for b in fake.requests[n:]} == {"flaky"}
        got = {it.id: (it.preferred_mode, set(it.traces)) for it in read_items(cfg.out)}
        assert got == EXPECTED
        assert all(t.answer == "A" for it in read_items(cfg.out) for t in it.traces.values())
        assert teach(cfg)["skipped"] == len(ITEMS)
    finally:
        fake.close()


def test_teach_sends_the_chat_template_kwargs_with_every_teacher_request(tmp_path):
    """`--chat-template-kwargs` reaches the teacher as the request field vLLM and `personadual serve` read."""
    from typer.testing import CliRunner

    from personadual.cli import app

    write_items(tmp_path / "in.jsonl", ITEMS[:2])
    fake = FakeEndpoint(lambda body: ok("A"))
    try:
        r = CliRunner().invoke(app, ["data", "teach", "--endpoint", fake.url, "--model", "teacher",
                                     "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl"),
                                     "--chat-template-kwargs", '{"enable_thinking": false}', "--no-progress",
                                     "--extra-body", '{"top_p": 0.9}'])
        assert r.exit_code == 0, r.output
        assert fake.requests and all(b["chat_template_kwargs"] == {"enable_thinking": False} and b["top_p"] == 0.9
                                     for b in fake.requests)
        bad = CliRunner().invoke(app, ["data", "teach", "--endpoint", fake.url, "--model", "teacher",
                                       "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o2.jsonl"),
                                       "--chat-template-kwargs", "[1]"])
        assert bad.exit_code == 2 and "--chat-template-kwargs must be a JSON object" in bad.output
    finally:
        fake.close()

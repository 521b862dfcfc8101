"""`personadual eval --endpoint`: through a real `personadual serve` (equal to in-process, item for item),
through a scripted plain endpoint (a kill -9 and a rerun), and the errors a user meets."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fake_endpoint import FakeEndpoint
from typer.testing import CliRunner

from personadual import modes as modes_lib
from personadual.cli import app
from personadual.data import read_items
from personadual.serve.process import ServerProcess

FIELDS = ("id", "run", "requested_mode", "mode", "answer", "correct", "well_formed")


def predictions(folder):
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def summary(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def test_endpoint_eval_through_serve_equals_in_process(sft_model, bench_dir, tmp_path):
    from personadual.eval.run import evaluate

    ref = evaluate(str(sft_model), str(bench_dir), str(tmp_path / "in_process"), max_new_tokens=48)
    with ServerProcess(sft_model, "--threads", "1") as srv:
        r = CliRunner().invoke(app, ["eval", "--endpoint", srv.base_url, "--model", "model", "--data", str(bench_dir),
                                     "--out", str(tmp_path / "endpoint"), "--concurrency", "4", "--max-new-tokens", "48",
                                     "--no-progress"])
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "endpoint" / "metrics.json").read_text())
    assert got["protocol"] == "modes" and got["endpoint"] == srv.base_url
    a, b = predictions(tmp_path / "in_process"), predictions(tmp_path / "endpoint")
    assert len(a) == len(b) == 3 * len(read_items(bench_dir / "test.jsonl"))  # auto + two forced runs
    assert {p["mode"] for p in b} == {"general", "personalized"}
    for x, y in zip(a, b):
        assert {k: x[k] for k in FIELDS} == {k: y[k] for k in FIELDS}
        assert x["p_mode"].keys() == y["p_mode"].keys()
        assert all(abs(x["p_mode"][k] - y["p_mode"][k]) < 1e-5 for k in x["p_mode"])
        assert abs(x["marker_mass"] - y["marker_mass"]) < 1e-5
    for key in ("acc", "personalized_acc", "interference", "helpful_gain", "mode_share", "hacc", "decisive",
                "balanced_acc", "format_error_rate"):
        assert got[key] == ref[key], key


def _scripted_plain(bench_dir, delay=0.0):
    """A plain endpoint that answers every item's gold in words for even-numbered items and mumbles otherwise."""
    items = read_items(bench_dir / "test.jsonl")
    by_prompt = {modes_lib.render_messages(it.question, it.persona)[-1]["content"]: (i, it) for i, it in enumerate(items)}
    assert len(by_prompt) == len(items)

    def script(body):
        i, it = by_prompt[body["messages"][-1]["content"]]
        return 200, f"Let me think. The answer is ({it.gold})." if i % 2 == 0 else "I would rather not say."

    fake = FakeEndpoint(script, models=["m"], delay=delay)
    fake.item_of = lambda body: by_prompt[body["messages"][-1]["content"]][1].id
    return fake, items


def test_endpoint_eval_survives_a_kill_and_asks_no_answered_item_again(bench_dir, tmp_path):
    fake, items = _scripted_plain(bench_dir, delay=0.05)
    out = tmp_path / "ev"
    log = out / "responses.jsonl"
    cmd = [sys.executable, "-m", "personadual.cli", "eval", "--endpoint", fake.url, "--model", "m", "--data",
           str(bench_dir), "--out", str(out), "--concurrency", "4", "--no-progress",
           "--extra-body", '{"max_completion_tokens": 64}', "--chat-template-kwargs", '{"enable_thinking": false}']
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not log.exists() or len(log.read_text().splitlines()) < 10:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = log.read_bytes()
        answered = {json.loads(line)["id"] for line in before.decode().splitlines() if line.endswith("}")}
        asked_first = [fake.item_of(b) for b in fake.requests]
        assert 10 <= len(answered) < len(items), "the kill must land mid-run"
        assert not (out / "metrics.json").exists()

        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        asked_again = [fake.item_of(b) for b in fake.requests[len(asked_first):]]
    finally:
        fake.close()
    assert all(b["max_completion_tokens"] == 64 and b["chat_template_kwargs"] == {"enable_thinking": False}
               and "mode" not in b for b in fake.requests)  # a plain endpoint gets no PersonaDual fields
    assert not set(asked_again) & answered  # nothing answered before the kill is asked again
    in_flight = set(asked_first) - answered  # asked, but killed before the reply was written
    assert len(in_flight) <= 4 and set(asked_again) == {it.id for it in items} - answered
    assert len(asked_again) == len(set(asked_again))
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert log.read_bytes().startswith(before[: before.rfind(b"\n") + 1])  # nothing written before is lost
    assert sorted(r["id"] for r in rows) == sorted(it.id for it in items)  # each item once
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "plain" and "hacc" not in m and "mode_share" not in m
    preds = {p["id"]: p for p in predictions(out)}
    for i, it in enumerate(items):
        assert preds[it.id]["correct"] == (i % 2 == 0) and preds[it.id]["well_formed"] == (i % 2 == 0)
    assert m["unreadable"]["n"] == len(items) // 2


@pytest.mark.parametrize("case,says", [
    ("bad key", "check the API key"), ("unknown model", "does not serve model 'm'; it serves: other-model"),
    ("wrong url", "check the URL"), ("rate limited", "rate limited, still after 1 retry"),
])
def test_endpoint_errors_say_what_to_do(case, says, bench_dir, tmp_path):
    status = {"bad key": 401, "unknown model": 404, "wrong url": 404, "rate limited": 429}[case]
    fake = FakeEndpoint(lambda body: (status, "Not Found" if case == "wrong url" else "nope", {"retry-after-ms": "1"}),
                        models={"unknown model": ["other-model"], "wrong url": None}.get(case, ["m"]))
    try:
        r = CliRunner().invoke(app, ["eval", "--endpoint", fake.url, "--model", "m", "--data", str(bench_dir),
                                     "--out", str(tmp_path / "ev"), "--retries", "1", "--limit", "3", "--no-progress"])
    finally:
        fake.close()
    assert r.exit_code == 2 and says in r.output, r.output
    assert not (tmp_path / "ev" / "metrics.json").exists()
    if case == "rate limited":  # a rerun will ask them again: say so
        assert "Rerun the same command" in r.output


def test_endpoint_eval_needs_an_out_and_a_set_key_variable(bench_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    base = ["eval", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--data", str(bench_dir)]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 2 and "--out is required with --endpoint" in r.output
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path), "--api-key-env", "NO_SUCH_KEY"])
    assert r.exit_code == 2 and "NO_SUCH_KEY" in r.output and "not set" in r.output

"""The studies' one runner (`experiments.pipeline`) on throwaway stages (tests/pipeline_toys.py): finished jobs are
skipped, a crashed run resumes, stages are timed, a worker process gets its saved config, and a failing worker's
log tail is in the error. Then the package-wide promises: no module builds a `personadual` command line for
its own jobs, and one rule decides every resume."""

import ast
import inspect
import json
from pathlib import Path

import pytest

from personadual.experiments.jobs import JobFailed
from personadual.experiments.pipeline import (Stage, config_job, deal, run_pipeline, run_stage, training_job)
from pipeline_toys import ToyEcho, ToyRun, toy_echo, toy_train

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src" / "personadual"


def calls(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "calls.jsonl").read_text().splitlines()] if (run / "calls.jsonl").exists() else []


def toy_job(run: Path, *overrides: str):
    return training_job(run.name, toy_train, ToyRun, None, [f"output_dir={run}", *overrides], run)


@pytest.fixture
def worker_path(monkeypatch):
    """Worker processes import the toy stages by name: tests/ on their path."""
    import os

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def test_a_stage_skips_finished_jobs_and_a_crashed_run_resumes_from_its_checkpoints(tmp_path):
    done, crashed = tmp_path / "done", tmp_path / "crashed"
    (done / "model").mkdir(parents=True)
    (done / "model" / "COMPLETE").write_text("final\n")  # finished before: never called again
    tidied = []
    stage = Stage("train", jobs=lambda: [toy_job(done), toy_job(crashed, "steps=3", "crash_after=2")], inline=True,
                  after=lambda: tidied.append(True))
    with pytest.raises(RuntimeError, match="killed at step 2"):
        run_stage(stage, tmp_path / "logs")
    assert [c["resume"] for c in calls(crashed)] == [False] and not calls(done)
    assert sorted(p.name for p in crashed.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]

    assert run_stage(stage, tmp_path / "logs")  # the rerun goes on from checkpoint-2
    assert [(c["resume"], c["start"]) for c in calls(crashed)] == [(False, 0), (True, 2)]
    assert (crashed / "model" / "COMPLETE").exists() and not calls(done)
    assert not run_stage(stage, tmp_path / "logs") and len(calls(crashed)) == 2  # all complete: nothing runs
    assert tidied  # after() runs whether or not a job did
    assert not (tmp_path / "logs").exists()  # inline jobs save no job files


def test_the_runner_times_each_stage_and_says_what_it_skipped(tmp_path, capsys):
    data, made = tmp_path / "data.txt", []

    def stages():
        return [Stage("data", work=lambda: data.write_text("x") and None, complete=data.exists),
                Stage("report", work=lambda: made.append("report"), complete=lambda: bool(made),
                      rerun_after_changes=True)]

    times = run_pipeline("[toy]", tmp_path, tmp_path / "logs", stages())
    assert set(times) == {"data", "report"} and json.loads((tmp_path / "stage_seconds.json").read_text()) == times
    assert "[toy] data: done in" in capsys.readouterr().out
    assert run_pipeline("[toy]", tmp_path, tmp_path / "logs", stages()) == times and made == ["report"]
    out = capsys.readouterr().out
    assert "[toy] data: already complete, skipped" in out and "[toy] report: already complete, skipped" in out
    data.unlink()  # an earlier stage redone: the report is made again from it
    run_pipeline("[toy]", tmp_path, tmp_path / "logs", stages())
    assert made == ["report", "report"]


def test_a_worker_process_gets_its_saved_config(tmp_path, worker_path):
    echo_out, run = tmp_path / "echo", tmp_path / "run"
    echo = config_job("echo", toy_echo, ToyEcho(str(echo_out), [1, 2.5, "x"]), echo_out,
                      lambda o: (o / "received.json").exists())
    train = toy_job(run, "steps=1")
    logs = tmp_path / "logs"
    assert run_stage(Stage("work", jobs=lambda: [echo, train], parallel=2), logs)

    saved = json.loads((logs / "echo.json").read_text())["jobs"]
    assert saved == [{"name": "echo", "call": "pipeline_toys:toy_echo", "config_type": "pipeline_toys:ToyEcho",
                      "config": {"out": str(echo_out), "values": [1, 2.5, "x"], "fail": None, "stop": False},
                      "kwargs": {}}]
    received = json.loads((echo_out / "received.json").read_text())
    assert received["type"] == "ToyEcho" and received["values"] == [1, 2.5, "x"] and received["threads"] == "1"
    (call,) = calls(run)
    assert call["resume"] is False and json.loads((logs / "run.json").read_text())["jobs"][0]["kwargs"] == {"resume": False}
    # the config is built in the worker exactly as here: a field left at its default stays as it was (0, not 0.0)
    assert call["rate"] == repr(train.config.rate) == "0"
    assert (logs / "echo.log").exists() and (logs / "run.log").exists()


def test_a_failing_worker_raises_with_its_log_tail_and_its_exit_code(tmp_path, worker_path):
    out = tmp_path / "x"
    fail = config_job("fails", toy_echo, ToyEcho(str(out), [], fail="boom: the last words"), out, lambda o: False)
    with pytest.raises(JobFailed) as err:
        run_stage(Stage("work", jobs=lambda: [fail]), tmp_path / "logs")
    assert err.value.returncode == 1 and "about to fail" in str(err.value) and "boom: the last words" in str(err.value)
    assert str(tmp_path / "logs" / "fails.log") in str(err.value)
    stop = config_job("stops", toy_echo, ToyEcho(str(out), [], stop=True), out, lambda o: False)
    with pytest.raises(JobFailed) as err:  # an error with an exit code (a study stopped at its check) exits with it
        run_stage(Stage("work", jobs=lambda: [stop]), tmp_path / "logs")
    assert err.value.returncode == 3 and "stopped at its check" in str(err.value)


def test_jobs_are_dealt_most_costly_first_to_the_least_loaded_worker(tmp_path):
    jobs = [config_job(f"j{k}", toy_echo, ToyEcho("o", []), tmp_path, lambda o: False, cost=c)
            for k, c in enumerate([1, 2, 1, 2, 1])]
    assert [[j.name for j in group] for group in deal(jobs, 2)] == [["j1", "j0", "j4"], ["j3", "j2"]]
    assert [[j.name for j in group] for group in deal(jobs[:1], 2)] == [["j0"]]


def test_an_eval_job_has_the_defaults_of_evaluate():
    from personadual.eval.run import evaluate
    from personadual.experiments.eval_jobs import EvalJob, evaluation

    params = inspect.signature(evaluate).parameters
    for field, default in inspect.signature(EvalJob).parameters.items():
        if field != "threads":
            assert field in params and default.default == params[field].default, field
    job = evaluation("m", Path("model"), Path("d.jsonl"), Path("out"), ["--max-new-tokens", "24"], protocol="plain")
    assert (job.max_new_tokens, job.protocol, job.threads, job.cost) == (24, "plain", 1, 1)
    from personadual.config import ConfigError

    with pytest.raises(ConfigError, match="max_new_tokenz"):
        evaluation("m", Path("model"), Path("d.jsonl"), Path("out"), ["--max-new-tokenz", "24"])


def _sources():
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(SRC.rglob("*.py"))]


def test_no_module_builds_a_command_line_of_the_package_for_its_own_jobs():
    """Jobs get their saved config (`pipeline`, `worker`): no module spells `python -m personadual.cli ...`, and no
    study a `-m personadual...` argument list of any kind. (`serve.process` starts the HTTP server, which is a
    process by nature, with its own options: not a study's job.)"""
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == "personadual.cli":
                found.append(f"{path.name}:{node.lineno} 'personadual.cli'")
            if isinstance(node, (ast.FunctionDef, ast.Name, ast.Attribute, ast.alias)):
                name = getattr(node, "name", None) or getattr(node, "id", None) or getattr(node, "attr", None)
                if name == "cli_command":
                    found.append(f"{path.name}:{getattr(node, 'lineno', 0)} cli_command")
            if isinstance(node, (ast.List, ast.Tuple)) and "experiments" in path.parts:
                texts = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                if "-m" in texts and any(t.startswith("personadual") for t in texts):
                    found.append(f"{path.name}:{node.lineno} a `-m personadual...` argument list")
    assert found == []


def test_one_rule_decides_every_resume():
    """The old per-study `_resume` copies are gone: a resume is `pipeline.resumes`, wherever it is decided."""
    found = []
    for path, tree in _sources():
        if "experiments" not in path.parts:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and "resume" in node.name and node.name != "resumes":
                found.append(f"{path.name}: def {node.name}")
            if isinstance(node, ast.Constant) and node.value == "--resume":
                found.append(f"{path.name}:{node.lineno} '--resume'")
            values = [k.value for k in getattr(node, "keywords", []) if k.arg == "resume"]
            if isinstance(node, ast.Dict):
                values += [v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value == "resume"]
            for v in values:
                if not (isinstance(v, ast.Call) and getattr(v.func, "id", None) == "resumes"):
                    found.append(f"{path.name}:{v.lineno} resume={ast.unparse(v)}")
    assert found == []
    globbers = sorted(f"{path.name}:{fn.name}" for path, tree in _sources() if "experiments" in path.parts
                      for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
                      for call in ast.walk(fn) if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "glob"
                      and any(isinstance(a, ast.Constant) and a.value == "checkpoint-*" for a in call.args))
    assert globbers == ["jobs.py:prune_checkpoints", "pipeline.py:resumes"]

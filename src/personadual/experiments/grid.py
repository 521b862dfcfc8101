"""`personadual demo-grid` and `study real-grid`: a study over seeds x CPU kernel settings, one table of its claims.

Why a grid. The demo is deterministic on one machine, but its floating-point sums depend on the
vector kernels torch picks for the processor, and 1,500 + 300 + 60 training steps compound a
difference in the sixth digit into another model. A claim that holds on one machine and fails on
the next is a property of the recipe, not of the method, so the recipe is judged over a grid:

- **seeds**: the whole-pipeline seed (data, initialisation, SFT order, RL sampling);
- **kernels**: ``ATEN_CPU_CAPABILITY`` (``default`` = no vector kernels, ``avx2``, ``avx512``), which
  changes torch's CPU kernels, and with them the rounding, exactly as another processor would;
  ``native`` leaves the machine's own choice (`torch.backends.cpu.get_cpu_capability()`).

Each run is a full study in its own folder (``OUT/s{seed}-{kernel}``): the demo (``study="demo"``) or `study
real` (``study="real"``), resumable as the study is: a finished run is read back, an interrupted one continues.
A run is a worker process (`worker`) on the study's plan saved as OUT/s{seed}-{kernel}.json, its output
in OUT/s{seed}-{kernel}.log, under the run's kernel setting. Every demo run is judged by the same `demo_report.claims`, every real study
by its own report's claims (`study_bench_report`); the table also shows the dual SFT model's decisive
items (how far apart its forced modes are), its val check and the run's time. Written to OUT/grid.md
and OUT/grid.json.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_text_atomic

KERNELS = ("native", "default", "avx2", "avx512")
STUDIES = ("demo", "real")  # the demo (`demo_plan`'s options: full, overrides) or `study real` (allow_degenerate)
CLAIM_NAMES = ("naive interference", "near interference-free", "helpful gain", "personalized kept", "RL improves")


@dataclass
class GridRun:
    seed: int
    kernel: str

    @property
    def name(self) -> str:
        return f"s{self.seed}-{self.kernel}"

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("ATEN_CPU_CAPABILITY", None)
        if self.kernel != "native":
            env["ATEN_CPU_CAPABILITY"] = self.kernel
        return env


@dataclass
class GridPlan:
    out: Path
    seeds: tuple[int, ...] = (0, 1, 2)
    kernels: tuple[str, ...] = ("default", "native")
    options: dict = field(default_factory=dict)  # every run's study settings: the demo's full and overrides (--set),
    #                                              the real study's allow_degenerate
    study: str = "demo"  # "demo" (`personadual demo`) or "real" (`personadual study real`)
    runs: list[GridRun] = field(init=False)

    def __post_init__(self):
        bad = [k for k in self.kernels if k not in KERNELS]
        if bad:
            raise ValueError(f"kernels: unknown {bad}; known: {', '.join(KERNELS)}")
        if not self.seeds or not self.kernels:
            raise ValueError("a grid needs at least one seed and one kernel setting")
        if self.study not in STUDIES:
            raise ValueError(f"study: expected one of {', '.join(STUDIES)}, got {self.study!r}")
        self.out = Path(self.out)
        self.runs = [GridRun(s, k) for s in self.seeds for k in self.kernels]


def run_grid(plan: GridPlan, run_one=None) -> dict:
    """Run (or resume) every demo of the grid, one after the other; return and write the table.

    Runs go one at a time: each demo already uses both cores, and its stage times are only
    comparable when nothing else runs beside it. ``run_one(run, out_dir)`` replaces the worker process
    (tests; another checkout's code)."""
    plan.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in plan.runs:
        out = plan.out / run.name
        if not run_finished(out):
            t0 = time.time()
            try:
                (run_one or study_worker(plan))(run, out)
            except StoppedRun as e:  # a real study that stopped at its check: a row that says so, then the next seed
                print(f"[grid] {run.name}: {e}")
                rows.append(stopped_row(run, out))
                write_grid(plan.out, rows)
                continue
            print(f"[grid] {run.name}: {time.time() - t0:.0f} s")
        rows.append(judge_run(run, out) if plan.study == "demo" else judge_real_run(run, out))
        write_grid(plan.out, rows)  # after every run: an interrupted grid keeps what it has
    return {"rows": rows, "all_claims": sum(r["all_claims"] for r in rows), "n": len(rows)}


def run_finished(out: Path) -> bool:
    """A run's study is finished: its report and summary are written (the summary last)."""
    return (out / "summary.json").exists() and (out / "report.md").exists()


def study_plan(plan: GridPlan, run: GridRun, out: Path):
    """The plan of one run's study: its folder (absolute, as every path in it then is), its seed, the grid's options."""
    if plan.study == "demo":
        from .demo import demo_plan

        return demo_plan(out.resolve(), run.seed, **plan.options)
    from .study_bench import BenchStudyPlan

    return BenchStudyPlan(out.resolve(), seed=run.seed, **plan.options)


def study_worker(plan: GridPlan):
    """``run_one`` of `run_grid`: the run's study in a worker process under the run's kernel setting, its plan
    saved beside its log (OUT/NAME.json, OUT/NAME.log, appended to across resumes)."""
    from .demo import run_plan
    from .jobs import JobFailed, run_worker
    from .pipeline import config_job, save_jobs
    from .study_bench import StudyStopped, run_bench_study

    call = run_plan if plan.study == "demo" else run_bench_study

    def run(run: GridRun, out: Path) -> None:
        job = config_job(run.name, call, study_plan(plan, run, out), out, run_finished)
        out.mkdir(parents=True, exist_ok=True)
        log = plan.out / f"{run.name}.log"
        try:
            run_worker(save_jobs(plan.out / f"{run.name}.json", [job]), log, run.env(), append=True)
        except JobFailed as e:
            if e.returncode == StudyStopped.exit_code and plan.study == "real":
                raise StoppedRun(f"stopped at its check (exit {e.returncode}); log: {log}") from None
            raise RuntimeError(f"{plan.study} {run.name} failed (exit {e.returncode}); log: {log}") from None
    return run


def judge_run(run: GridRun, out: Path) -> dict:
    """One row: each claim's verdict and sentence, the dual SFT model's decisive items, the val checks of the
    RL start and of rl_dual, the run's time."""
    from ..eval.report import load_run
    from .demo import BASE_PLAIN, RL_ESTIMATORS, SFT_VARIANTS, UPPER_BOUND, val_checks
    from .demo_report import claim_intervals, claims, paired_diffs, undecided

    names = [BASE_PLAIN, *(f"sft_{m}" for m in SFT_VARIANTS), *(f"rl_{e}" for e in RL_ESTIMATORS), UPPER_BOUND]
    metrics = {n: load_run(out / "eval" / n) for n in names if (out / "eval" / n / "metrics.json").exists()}
    diffs = paired_diffs(out / "eval")
    verdicts, intervals = claims(metrics, diffs), claim_intervals(out / "eval", metrics, diffs)
    times = json.loads((out / "stage_seconds.json").read_text()) if (out / "stage_seconds.json").exists() else {}
    summary = json.loads((out / "summary.json").read_text())
    checks = val_checks(out)
    return {"run": run.name, "seed": run.seed, "kernel": run.kernel,
            "cpu_capability": (summary.get("environment") or {}).get("cpu_capability"),
            "claims": [{"name": n, "pass": ok, "text": text, "interval": iv, "within_noise": undecided(iv)}
                       for n, (ok, text), iv in zip(CLAIM_NAMES, verdicts, intervals)],
            "all_claims": all(ok for ok, _ in verdicts),
            "sft_dual_decisive": metrics["sft_dual"].get("decisive"),
            "sft_dual_check": check_verdict(checks.get("sft_dual")),
            "rl_dual_check": check_verdict(checks.get("rl_dual")),
            "seconds": round(sum(times.values()), 1)}


class StoppedRun(RuntimeError):
    """A run that stopped itself at a stage check: the grid records it and goes on."""


def stopped_row(run: GridRun, out: Path) -> dict:
    """A real study that stopped at its check: every claim unjudged (FAIL), the check's verdict said."""
    from .study_bench_report import CLAIM_NAMES as REAL_CLAIMS

    check = json.loads((out / "check.json").read_text()) if (out / "check.json").exists() else {}
    sep = check.get("separation") or {}
    return {"run": run.name, "seed": run.seed, "kernel": run.kernel, "cpu_capability": None,
            "claims": [{"name": n, "pass": False, "text": "not judged: the study stopped at its check",
                        "interval": None, "within_noise": False} for n in REAL_CLAIMS],
            "all_claims": False, "sft_dual_decisive": sep.get("decisive"),
            "sft_dual_check": f"STOPPED: {check_verdict(check)}", "rl_dual_check": "not trained", "seconds": 0.0}


def judge_real_run(run: GridRun, out: Path) -> dict:
    """One real study's row, from its summary.json: the claims as its report judged them."""
    summary = json.loads((out / "summary.json").read_text())
    check = summary.get("check") or {}
    sep = check.get("separation") or {}
    return {"run": run.name, "seed": run.seed, "kernel": run.kernel, "cpu_capability": None,
            "claims": summary["claims"], "all_claims": all(c["pass"] for c in summary["claims"]),
            "sft_dual_decisive": sep.get("decisive"), "sft_dual_check": check_verdict(check),
            "rl_dual_check": f"general context: {check.get('general_context')}",
            "seconds": round(sum((summary.get("stage_seconds") or {}).values()), 1)}


def check_verdict(check: dict | None) -> str:
    """A model's val check in a word or two (older demos ran none)."""
    if not check:
        return "not checked"
    if check.get("degenerate"):
        return "DEGENERATE"
    if check.get("misreads_helpful"):
        return f"MISREADS helpful ({100 * check['personalized_on_helpful']:.0f}%)"
    if check.get("misplaces_personalized"):
        cond, share = check["misplaced"]
        return f"MISPLACES personalized ({100 * share:.0f}% of {cond})"
    return "ok"


def verdict_cell(claim: dict) -> str:
    cell = "PASS" if claim["pass"] else "**FAIL**"
    return cell + " (within noise)" if claim.get("within_noise") else cell


def write_grid(out: Path, rows: list[dict]) -> str:
    """OUT/grid.json and OUT/grid.md: a row per run, a PASS/FAIL cell per claim, the failures spelt out."""
    from .demo_report import RL_CLAIM, noise_sentence

    names = [c["name"] for c in rows[0]["claims"]] if rows else list(CLAIM_NAMES)
    head = ["run", "kernel in force", *names, "sft_dual decisive", "sft_dual val check", "rl_dual val check", "seconds"]
    verdicts = [c for r in rows for c in r["claims"]]
    lines = [f"# Over seeds x kernels: {sum(r['all_claims'] for r in rows)}/{len(rows)} runs pass all {len(names)} claims",
             "", f"{sum(not c['pass'] for c in verdicts)} of {len(verdicts)} claims fail, "
             f"{sum(not c['pass'] and not c.get('within_noise') for c in verdicts)} of them beyond the test split's noise "
             "(a verdict marked *within noise* has its goal inside the claim's paired 95% interval: another test "
             "split of the same size could reverse it).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], r["cpu_capability"] or r["kernel"], *(verdict_cell(c) for c in r["claims"]),
                 str(r["sft_dual_decisive"]), r.get("sft_dual_check", "not checked"),
                 r.get("rl_dual_check", "not checked"), f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [(r["run"], c["text"] + noise_sentence(c.get("interval"), show_span=k != RL_CLAIM))
              for r in rows for k, c in enumerate(r["claims"]) if not c["pass"]]
    if failed:
        lines += ["", "## Claims that fail", ""] + [f"- {run}: {text}" for run, text in failed]
    md = "\n".join(lines) + "\n"
    write_text_atomic(out / "grid.json", json.dumps(rows, indent=2) + "\n")
    write_text_atomic(out / "grid.md", md)
    return md

"""The real-model study's report.md and summary.json, and the machine's speed they are read against.

Four parts: (a) the paper's five claims on PersonaBench test, judged by the demo's own rules
(`demo_report.claims`) with the one baseline the study trains; (b) MMLU's test subjects, every model side
by side: accuracy per persona condition, interference, helpful gain and persona pull with 95% CIs, the
answers' letters, once with the mode models' reasoning skipped (choice protocol) and once generated; (c) the
audit of the base model in three protocols; (d) stage times beside the fp32 matmul rate measured when the
run started, so a reader on another host can scale them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..data.schema import OBJECTIVE_CONDITIONS
from ..files import write_text_atomic

PB_ROWS = {"base_pb_plain": "base (plain)", "base_pb_choice": "base (choice)", "sft_persona_prompted_pb": "naive SFT",
           "sft_dual_pb": "dual SFT", "rl_dual_pb": "dual SFT + DualGRPO"}
MMLU_ROWS = {"base_mmlu_text": "base (choice, text)", "sft_persona_prompted_mmlu": "naive SFT",
             "sft_dual_mmlu": "dual SFT", "rl_dual_mmlu": "dual SFT + DualGRPO"}
MMLU_GEN_ROWS = {"base_mmlu_plain": "base (plain)", "sft_persona_prompted_mmlu_gen": "naive SFT",
                 "sft_dual_mmlu_gen": "dual SFT", "rl_dual_mmlu_gen": "dual SFT + DualGRPO"}
AUDIT_ROWS = {"base_mmlu_text": "choice, text form", "base_mmlu_letter": "choice, letter form",
              "base_mmlu_plain": "plain (free text)"}
PULLS = ("misaligned", "helpful", "ambiguous")
NOT_TRAINED = ("The demo's other baselines (`sft_general_only`, `sft_personalized_only`, the RL estimators "
               "`dual_paper` and `grpo`) and its no-persona upper bound are not trained here: claim 1 is judged on the "
               "naive SFT alone (the demo takes the worse of two naive models), claim 4 against the naive SFT as the "
               "only personalized baseline, and claim 2 against the same model's no-persona accuracy, not an upper bound.")


def matmul_gflops(threads: int, n: int = 2048, reps: int = 4) -> float:
    """fp32 matmul FLOP/s with ``threads`` torch threads, in GFLOP/s: the rate the stage times are read against."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        return round(2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9, 1)
    finally:
        torch.set_num_threads(before)


def measure_machine(out: Path) -> dict:
    """The matmul rate at 1 thread (the parallel jobs') and at every core (the RL job's), now; appended to
    OUT/machine.json, one entry per invocation (a resumed run's stages ran on the later ones)."""
    cpus = os.cpu_count() or 1
    entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": cpus, "load_average": round(os.getloadavg()[0], 2),
             "matmul_gflops_1_thread": matmul_gflops(1), f"matmul_gflops_{cpus}_threads": matmul_gflops(cpus)}
    path = out / "machine.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    write_text_atomic(path, json.dumps({"runs": [*runs, entry]}, indent=2) + "\n")
    return entry


def _acc(x: dict | None) -> str:
    return "-" if not x else f"{100 * x['mean']:.1f} [{100 * x['lo']:.0f}-{100 * x['hi']:.0f}]"


def _pull(x: dict | None) -> str:
    return "-" if not x else f"{100 * x['mean']:+.1f} [{100 * x['lo']:+.1f}, {100 * x['hi']:+.1f}]"


def _letters(m: dict) -> str:
    answers, gold = (m.get("letters") or {}).get("answers") or {}, (m.get("letters") or {}).get("gold") or {}
    return " ".join(f"{k} {100 * v:.0f} ({100 * gold.get(k, 0):.0f})" for k, v in answers.items()) or "-"


def _speed(r: dict) -> str:
    every = r.get(f"matmul_gflops_{r['cpus']}_threads")
    return (f"{r['time']}: {r['matmul_gflops_1_thread']} GFLOP/s at 1 thread, {every} at {r['cpus']} threads, "
            f"load average {r['load_average']}")


def gaps(ev: Path, name: str) -> dict:
    """Interference and helpful gain of one evaluation with paired 95% CIs, from its predictions (auto run)."""
    from ..eval.metrics import paired_gap
    from ..eval.predictions import load_predictions

    preds = load_predictions(ev / name)["auto"]
    return {"interference": paired_gap(preds, "none", "misaligned"), "helpful_gain": paired_gap(preds, "helpful", "none")}


def mmlu_table(metrics: dict[str, dict], rows: dict[str, str], unreadable: bool = False) -> list[str]:
    """Accuracy per condition, interference, helpful gain and pull per condition (each with its 95% CI), letters.
    ``metrics[name]["gaps"]``: the paired interference and helpful gain (`gaps`)."""
    head = ["model", *OBJECTIVE_CONDITIONS, "interference", "helpful gain", *(f"pull: {c}" for c in PULLS),
            "letters: answers (gold), %"] + (["unreadable"] if unreadable else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in rows.items():
        m = metrics.get(key)
        if m is None:
            continue
        cells = [label, *(_acc(m["acc"].get(c)) for c in OBJECTIVE_CONDITIONS),
                 _pull(m["gaps"]["interference"]), _pull(m["gaps"]["helpful_gain"]),
                 *(_pull((m.get("pull") or {}).get(c)) for c in PULLS), _letters(m)]
        if unreadable:
            u = m.get("unreadable")
            cells.append(f"{100 * u['rate']:.1f}%" if u else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mode_share_lines(metrics: dict[str, dict], rows: dict[str, str]) -> list[str]:
    """Share of items each mode model answers in the personalized mode, per condition."""
    shares = [(metrics.get(k) or {}).get("mode_share") or {} for k in rows]
    conds = [c for c in (*OBJECTIVE_CONDITIONS, "personalized") if any(c in sh for sh in shares)]
    lines = ["| model | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
    for key, label in rows.items():
        share = (metrics.get(key) or {}).get("mode_share")
        if share:
            lines.append(f"| {label} | " + " | ".join(f"{100 * share[c].get('personalized', 0):.0f}%" if c in share
                                                        else "-" for c in conds) + " |")
    return lines if len(lines) > 2 else []


def entry(m: dict) -> dict:
    """A model's figures as summary.json keeps them."""
    return {"protocol": m.get("protocol"), "n": m.get("n"), "acc": m.get("acc"), "personalized_acc": m.get("personalized_acc"),
            "interference": (m.get("interference") or {}).get("misaligned"), "helpful_gain": m.get("helpful_gain"),
            "paired": m.get("gaps"),
            "pull": m.get("pull"), "letters": m.get("letters"), "hacc": m.get("hacc"), "balanced_acc": m.get("balanced_acc"),
            "mode_share_personalized": {c: s.get("personalized", 0.0) for c, s in (m.get("mode_share") or {}).items()},
            "unreadable": m.get("unreadable")}


def judged_claims(metrics: dict[str, dict], ev: Path) -> list[tuple[bool, str]]:
    """The demo's five claims on PersonaBench test, with the naive SFT as the only baseline."""
    from ..eval.metrics import paired_balanced_diff
    from ..eval.report import load_correct
    from .demo_report import claims

    named = {k[: -len("_pb")]: v for k, v in metrics.items() if k.endswith("_pb")}
    diff = paired_balanced_diff(load_correct(ev / "rl_dual_pb"), load_correct(ev / "sft_dual_pb"))
    return claims(named, {"sft_dual": diff}, naive_models=("sft_persona_prompted",), baselines=("sft_persona_prompted",))


def write_study_report(stages, machine: dict) -> dict:
    """OUT/report.md, OUT/summary.json and OUT/report/{pb,mmlu}/ (comparison.md and plots)."""
    from ..eval.report import compare_runs, comparison_table, load_run
    from ..eval.verdicts import is_degenerate
    from .demo_report import environment_line, run_environment

    out, ev = stages.out, stages.ev
    metrics = {p.name: load_run(p) for p in sorted(ev.iterdir()) if (p / "metrics.json").exists()}
    for name in {*MMLU_ROWS, *MMLU_GEN_ROWS, *AUDIT_ROWS} & set(metrics):
        metrics[name]["gaps"] = gaps(ev, name)
    for part, rows in (("pb", PB_ROWS), ("mmlu", MMLU_ROWS)):
        names = [k for k in rows if k in metrics]
        compare_runs([str(ev / k) for k in names], out / "report" / part, [rows[k] for k in names])
    verdicts = judged_claims(metrics, ev)
    data = json.loads((stages.data.root / "summary.json").read_text())
    times = json.loads((out / "stage_seconds.json").read_text()) if (out / "stage_seconds.json").exists() else {}
    runs = json.loads((out / "machine.json").read_text())["runs"]
    env = run_environment(stages.p.seed)
    sep = metrics["sft_dual_pb"].get("separation") or {}
    pb_n, mm = metrics["rl_dual_pb"]["n"], data["mmlu_eval"]
    lines = [
        "# PersonaDual on a real pretrained model: PersonaBench and MMLU", "", environment_line(env),
        f"Budget `{stages.p.budget}`; base model `{stages.base}`"
        + ("" if stages.p.model_dir else " (SmolLM2-135M-Instruct, `personadual model get`)") + ".", "",
        "## (a) The paper's claims on PersonaBench test", "",
        f"{pb_n} test items (held-out names, roles and persona wordings), greedy, accuracy in %. The base model is asked "
        "as any model is (plain: its free text read; choice: the option letters' log-likelihoods); the trained models in "
        "the mode protocol (every mode also forced, for HAcc).", "",
        comparison_table({PB_ROWS[k]: metrics[k] for k in PB_ROWS if k in metrics}), "",
        *(f"- {'PASS' if ok else 'FAIL'}: {text}" for ok, text in verdicts), "", NOT_TRAINED, "",
        f"Stage check: the dual SFT model's forced modes differ in correctness on {sep.get('decisive', 0)} of "
        f"{sep.get('n', 0)} test items" + (" -- DEGENERATE: its marker barely steers its reasoning, so DualGRPO's forced "
                                           "modes are two copies of one rollout." if is_degenerate(sep) else "."), "",
        "## (b) MMLU, test subjects: every model side by side", "",
        f"{mm['questions']} questions from {mm['subjects']} test subjects (never trained on), each under every persona "
        f"condition: {mm['items']} items. Accuracy in % [95% bootstrap CI]; interference = none - misaligned and helpful "
        "gain = helpful - none, in points [paired 95% CI, by question]; pull = the persona's target option's probability with the persona minus "
        "without, same question, points [paired 95% CI]; letters = share of answers (of gold answers).", "",
        *mmlu_table(metrics, MMLU_ROWS), "",
        "How each is scored: the base model in the choice protocol's text form (each option's text after `Answer:`, per "
        "character); the mode models in the choice protocol too, which for them scores the option letter in the answer "
        "block after each forced marker (`[General_mode]\\n<answer> {\"answer\": \"`): it **skips the reasoning**, asking "
        "what each mode answers straight away, and the auto answer is that of the mode the model prefers on p(mode | x). "
        "Personalized-mode share per condition (auto):", "", *mode_share_lines(metrics, MMLU_ROWS), "",
        f"The same models with their reasoning generated (the modes protocol: the answer read from the answer block "
        f"the model writes after its own reasoning, greedy), on the first {mm['plain_questions']} questions "
        f"({mm['plain_items']} items), beside the base model's plain answers: the study's templated traces state the "
        "answer inside the reasoning, which the choice protocol above skips. Pull = the rate at which the persona's "
        "target is answered, with the persona minus without.", "",
        *mmlu_table(metrics, MMLU_GEN_ROWS, unreadable=True), "",
        "Personalized-mode share per condition (auto, generated):", "",
        *mode_share_lines(metrics, MMLU_GEN_ROWS), "",
        "## (c) The audit: the base model in three protocols", "",
        f"The choice forms on all {mm['items']} items, the plain protocol (free-text generation, answers read from the "
        f"text) on the first {mm['plain_questions']} questions ({mm['plain_items']} items).", "",
        *mmlu_table(metrics, AUDIT_ROWS, unreadable=True), "",
        "## (d) Stage times and the machine", "",
        "| stage | seconds |", "|---|---|", *(f"| {k} | {v:.0f} |" for k, v in times.items()),
        f"| total | {sum(times.values()):.0f} |", "",
        "fp32 matmul (2048 x 2048) measured at the start of each invocation (a resumed run lists several): " +
        "; ".join(map(_speed, runs)) + ". Every stage but rl runs 1-thread jobs (two at a time); rl runs one job on every "
        "core. On another host, scale each stage by the ratio of the two rates (its own from `bench/real_model.py` or "
        "the first line of its machine.json).", "",
        "Per-model details: `eval/<name>/report.md`; every prediction: `eval/<name>/predictions.jsonl`; plots: "
        "`report/pb/`, `report/mmlu/`.",
    ]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    summary = {"budget": stages.p.budget, "run": stages.p.identity(), "data": data, "environment": env,
               "claims": [{"pass": ok, "text": text} for ok, text in verdicts],
               "personabench": {k: entry(metrics[k]) for k in PB_ROWS if k in metrics},
               "mmlu": {k: entry(metrics[k]) for k in MMLU_ROWS if k in metrics},
               "mmlu_generated": {k: entry(metrics[k]) for k in MMLU_GEN_ROWS if k in metrics},
               "audit": {k: entry(metrics[k]) for k in AUDIT_ROWS if k in metrics},
               "stage_checks": {"sft_dual": {**sep, "degenerate": is_degenerate(sep)}},
               "stage_seconds": times, "machine": runs, "machine_now": machine}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary

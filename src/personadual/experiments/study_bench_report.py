"""The real-benchmark study's report: the paper's five claims and ours, on held-out questions, with paired intervals.

Claims (goals as the CPU demo's, `demo_report`):

1. naive interference: the naive persona-prompted SFT loses >= 10 points under misaligned personas;
2. PersonaDual (dual SFT + DualGRPO) is near interference-free: misaligned within 2 points of no persona;
3. it gains from helpful personas: >= 3 points over no persona;
4. its accuracy on PersonaBench's personalized questions is within 2 points of the naive baseline's or above;
5. DualGRPO improves its SFT start (balanced accuracy over the persona conditions, paired);
6. ours: PersonaDual's interference is at most a quarter of the base model's, on the same questions.

Every objective figure is on the five benchmarks' test partitions, read in the cloze form; each claim
carries the paired 95% interval of the statistic it compares with its goal, and a verdict whose goal lies
inside that interval is marked *within noise*.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..eval.metrics import paired_balanced_diff, paired_condition_diff, paired_gap, paired_item_diff
from ..eval.report import load_correct
from ..files import write_text_atomic
from .demo_report import HELPFUL_GAIN, NAIVE_LOSS, NEAR_FREE, PERSONALIZED_WITHIN, undecided

CLAIM_NAMES = ("naive interference", "near interference-free", "helpful gain", "personalized kept", "RL improves",
               "interference <= base / 4")
MODELS = ("base", "sft_persona_prompted", "sft_dual", "rl_dual")
CONDITIONS = ("none", "irrelevant", "misaligned", "helpful", "ambiguous")


def _mean(x: dict | None) -> float:
    return (x or {}).get("mean") or 0.0


def bench_claims(m: dict[str, dict], correct: dict[str, dict], pers: dict[str, dict]) -> list[dict]:
    """Each claim: name, pass, sentence, and its paired interval with the goal (or None)."""
    acc = lambda n, c: m[n]["acc"][c]["mean"]  # noqa: E731
    naive, ours = "sft_persona_prompted", "rl_dual"

    def claim(k: int, ok: bool, text: str, interval: dict | None, goal: float | None) -> dict:
        iv = None if interval is None or goal is None else {**interval, "goal": goal}
        return {"name": CLAIM_NAMES[k], "pass": bool(ok), "text": text, "interval": iv, "within_noise": undecided(iv)}

    loss = acc(naive, "none") - acc(naive, "misaligned")
    base_int = acc("base", "none") - acc("base", "misaligned")
    our_int = acc(ours, "none") - acc(ours, "misaligned")
    p_ours, p_naive = _mean(pers.get(ours)), _mean(pers.get(naive))
    bal = paired_balanced_diff(correct[ours], correct["sft_dual"])
    out = [
        claim(0, loss >= NAIVE_LOSS, f"The naive persona-prompted SFT loses {100 * loss:.1f} points under misaligned "
              "personas (goal >= 10).", paired_condition_diff(correct[naive], "none", "misaligned"), NAIVE_LOSS),
        claim(1, acc(ours, "misaligned") >= acc(ours, "none") - NEAR_FREE, f"PersonaDual answers "
              f"{100 * acc(ours, 'misaligned'):.1f}% under misaligned personas vs {100 * acc(ours, 'none'):.1f}% with "
              "none (goal: within 2 points).", paired_condition_diff(correct[ours], "misaligned", "none"), -NEAR_FREE),
        claim(2, acc(ours, "helpful") >= acc(ours, "none") + HELPFUL_GAIN, f"With helpful personas it answers "
              f"{100 * acc(ours, 'helpful'):.1f}% vs {100 * acc(ours, 'none'):.1f}% (goal: +3 points).",
              paired_condition_diff(correct[ours], "helpful", "none"), HELPFUL_GAIN),
        claim(3, p_ours >= p_naive - PERSONALIZED_WITHIN, f"On PersonaBench's personalized questions it answers "
              f"{100 * p_ours:.1f}% vs the naive SFT's {100 * p_naive:.1f}% (goal: within 2 points or above).",
              paired_item_diff(pers["_correct"][ours], pers["_correct"][naive], "personalized")
              if pers.get("_correct") else None, -PERSONALIZED_WITHIN),
        claim(4, (m[ours].get("balanced_acc") or 0) > (m["sft_dual"].get("balanced_acc") or 0),
              f"DualGRPO moves balanced accuracy {100 * (m['sft_dual'].get('balanced_acc') or 0):.1f} -> "
              f"{100 * (m[ours].get('balanced_acc') or 0):.1f}.", bal, 0.0),
        claim(5, our_int <= base_int / 4, f"PersonaDual's interference is {100 * our_int:.1f} points against the base "
              f"model's {100 * base_int:.1f} on the same questions (goal: at most a quarter, "
              f"{100 * base_int / 4:.1f}).", None, None),
    ]
    return out


def _cell(x: dict | None) -> str:
    return "-" if not x else f"{100 * x['mean']:.1f} [{100 * x['lo']:.0f}, {100 * x['hi']:.0f}]"


def _mode_share(m: dict) -> str:
    share = (m.get("mode_share") or {})
    return ", ".join(f"{c} {100 * share[c].get('personalized', 0):.0f}%" for c in CONDITIONS if c in share) or "-"


def model_rows(m: dict[str, dict], preds: dict[str, list], pers: dict[str, dict]) -> list[str]:
    head = ("| model | " + " | ".join(CONDITIONS) + " | interference | helpful gain | pull (misaligned) | balanced | "
            "HAcc | PersonaBench personalized | personalized mode chosen | top answer |")
    lines = [head, "|" + "---|" * 14]
    for n in MODELS:
        if n not in m:
            continue
        x, letters = m[n], m[n].get("letters") or {}
        answers = letters.get("answers") or {}
        top = max(answers, key=answers.get, default=None)
        top_cell = f"{top} {100 * answers[top]:.0f}%" + (" **ONE OPTION**" if letters.get("one_option") else "") if top else "-"
        hacc = "-" if x.get("hacc") is None else f"{100 * x['hacc']:.1f}"
        lines.append(f"| {n} | " + " | ".join(_cell(x["acc"].get(c)) for c in CONDITIONS)
                     + f" | {_cell(paired_gap(preds[n], 'none', 'misaligned'))} | "
                     f"{_cell(paired_gap(preds[n], 'helpful', 'none'))} | {_cell((x.get('pull') or {}).get('misaligned'))}"
                     f" | {100 * (x.get('balanced_acc') or 0):.1f} | {hacc} | "
                     f"{_cell(pers.get(n))} | {_mode_share(x) if n != 'base' else '-'} | {top_cell} |")
    return lines


def benchmark_rows(preds: dict[str, list]) -> list[str]:
    """Per benchmark and model: none, misaligned, helpful accuracy and the two paired gaps."""
    from ..eval.metrics import bootstrap_ci

    lines = ["| benchmark | model | none | misaligned | helpful | interference | helpful gain |", "|" + "---|" * 7]
    benches = sorted({p.family.split(":")[0] for p in preds["base"]})
    for bench in benches:
        for n in MODELS:
            mine = [p for p in preds[n] if p.family.split(":")[0] == bench]
            acc = [bootstrap_ci([float(p.correct) for p in mine if p.condition == c]) for c in ("none", "misaligned",
                                                                                                "helpful")]
            lines.append(f"| {bench if n == 'base' else ''} | {n} | " + " | ".join(_cell(a) for a in acc)
                         + f" | {_cell(paired_gap(mine, 'none', 'misaligned'))} | "
                         f"{_cell(paired_gap(mine, 'helpful', 'none'))} |")
    return lines


def write_bench_report(study) -> dict:
    from ..eval.predictions import load_predictions

    ev = study.ev
    m = {n: json.loads((ev / n / "metrics.json").read_text()) for n in MODELS}
    preds = {n: load_predictions(ev / n)["auto"] for n in MODELS}
    correct = {n: load_correct(ev / n) for n in MODELS}
    pers = {n: (json.loads((ev / f"{n}_personalized" / "metrics.json").read_text()).get("personalized_acc"))
            for n in MODELS[1:]}
    pers["_correct"] = {n: load_correct(ev / f"{n}_personalized") for n in MODELS[1:]}
    verdicts = bench_claims(m, correct, pers)
    check = json.loads((study.out / "check.json").read_text())
    times = json.loads((study.out / "stage_seconds.json").read_text()) if (study.out / "stage_seconds.json").exists() else {}
    machine = json.loads((study.out / "machine.json").read_text())["runs"][-1]
    all_threads = f"matmul_gflops_{machine.get('cpus')}_threads"
    n_pass = sum(c["pass"] for c in verdicts)
    lines = [f"# PersonaDual on {study.base} and five real benchmarks (seed {study.p.seed}): {n_pass} of "
             f"{len(verdicts)} claims", "",
             f"Every objective figure: the benchmarks' test partitions (cloze form), accuracy % [95% CI]. The mode "
             f"models' general mode is read with context `{check['general_context']}` (chosen on val: balanced "
             f"accuracy {json.dumps(check['balanced_acc_val'])}). The dual SFT model's forced modes differ in "
             f"correctness on {check['separation'].get('decisive')} of {check['separation'].get('n')} val items"
             + (" (DEGENERATE)" if check["degenerate"] else "") + ".", "", "## Claims", ""]
    for c in verdicts:
        iv = c["interval"]
        noise = "" if iv is None else (f" Paired 95% interval {100 * iv['lo']:+.1f} to {100 * iv['hi']:+.1f} (goal "
                                       f"{100 * iv['goal']:+.1f})" + (": within noise." if c["within_noise"] else "."))
        lines.append(f"- **{'PASS' if c['pass'] else 'FAIL'}** {c['name']}: {c['text']}{noise}")
    lines += ["", "## Models on test", "", *model_rows(m, preds, pers), "", "## Per benchmark", "",
              *benchmark_rows(preds), "",
              f"Wall time {sum(times.values()):.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in times.items())}); the "
              f"machine's fp32 matmul rate at the start: {machine.get('matmul_gflops_1_thread')} GFLOP/s on 1 thread, "
              f"{machine.get(all_threads)} on {machine.get('cpus')}."]
    summary = {"seed": study.p.seed, "claims": verdicts, "all_claims": n_pass == len(verdicts), "check": check,
               "models": {n: {k: m[n].get(k) for k in ("acc", "interference", "helpful_gain", "balanced_acc", "hacc",
                                                         "mode_share", "letters")} for n in MODELS},
               "personalized": {n: pers[n] for n in MODELS[1:]}, "stage_seconds": times}
    write_text_atomic(study.out / "report.md", "\n".join(lines) + "\n")
    write_text_atomic(study.out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary

"""The demo's report.md: the paper's story in one page, with each claim checked against the numbers."""

from __future__ import annotations

import os
from pathlib import Path

from ..eval.metrics import paired_balanced_diff, paired_condition_diff, paired_item_diff
from ..eval.report import CELL_ORACLE, comparison_table, load_correct

BASELINES = ("sft_general_only", "sft_personalized_only", "sft_persona_prompted")
RIVALS = ("rl_dual_paper", "rl_grpo", "sft_dual")  # what rl_dual is compared with, item by item


def run_environment(seed: int) -> dict:
    """What makes two runs of the same code differ: the seed, torch's CPU kernels, the library versions.

    torch picks its vector kernels by the processor (``ATEN_CPU_CAPABILITY`` overrides the choice),
    and with them the order of floating-point sums: the same seed on another processor trains
    another model."""
    import platform

    import torch
    import transformers
    import trl

    return {"seed": seed, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__, "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count()}


def environment_line(env: dict | None) -> str:
    if not env:
        return "Run environment: not recorded."
    forced = f" (forced by ATEN_CPU_CAPABILITY={env['ATEN_CPU_CAPABILITY']})" if env.get("ATEN_CPU_CAPABILITY") else " (the machine's own)"
    return (f"Run: seed {env['seed']}, CPU kernels {env['cpu_capability']}{forced}, torch {env['torch']}, "
            f"transformers {env['transformers']}, trl {env['trl']}, {env['cpus']} CPUs.")


def degenerate_sentence(name: str, check: dict) -> str:
    differ = check.get("answers_differ", {})
    return (f"{name} is DEGENERATE: its forced modes differ in correctness on {check['decisive']} of {check['n']} val items "
            f"({100 * (check.get('decisive_share') or 0):.1f}%) and in answer on {100 * differ.get('misaligned', 0):.0f}% of "
            "misaligned ones: its marker barely steers its reasoning, so DualGRPO's forced modes are two copies of one "
            "rollout and have nothing to choose between.")


def stage_check_lines(checks: dict[str, dict]) -> list[str]:
    """The report's stage checks: each checked model's separation on val, degenerate ones named plainly."""
    if not checks:
        return ["- No stage checks were run."]
    out = []
    for name, c in checks.items():
        if c["degenerate"]:
            out.append(f"- **{degenerate_sentence(name, c)}**")
        else:
            differ = c.get("answers_differ", {})
            out.append(f"- {name}: modes separated on val: {c['decisive']} of {c['n']} items decisive "
                       f"({100 * c['decisive_share']:.1f}%), answers differ on {100 * differ.get('misaligned', 0):.0f}% of "
                       f"misaligned and {100 * differ.get('personalized', 0):.0f}% of personalized items.")
        if c.get("misreads_helpful"):
            out.append(f"- **{name} MISREADS helpful personas: forced into its personalized mode it is right on "
                       f"{100 * c['personalized_on_helpful']:.0f}% of helpful val items, whose persona names the gold option** "
                       "(a sound model: 95-100%). Choosing that mode gains only where it reads them: the helpful gain is "
                       "capped by it.")
        if c.get("misplaces_personalized"):
            cond, share = c["misplaced"]
            out.append(f"- **{name} MISPLACES the personalized mode: it chooses it on {100 * share:.0f}% of {cond} val items**, "
                       "objective questions whose persona has nothing to give (a sound model: under 10%). Its "
                       "accuracy there pays for it.")
    return out


def paired_diffs(eval_dir: Path, rivals: tuple[str, ...] = RIVALS) -> dict[str, dict]:
    """rivals the run evaluated -> balanced accuracy of rl_dual minus theirs, with a paired bootstrap 95% CI."""
    ours = load_correct(eval_dir / "rl_dual")
    return {r: paired_balanced_diff(ours, load_correct(eval_dir / r)) for r in rivals
            if (eval_dir / r / "predictions.jsonl").exists()}


def _ci(d: dict | None, what: str = "difference") -> str:
    return "" if not d else f" (paired 95% CI of the {what} {100 * d['lo']:+.1f} to {100 * d['hi']:+.1f})"


NAIVE = ("sft_persona_prompted", "sft_personalized_only")  # the baselines that follow every persona
# The claims' goals (accuracy fractions): shared by the verdicts and by the intervals that say whether this split can decide them
NAIVE_LOSS, NEAR_FREE, HELPFUL_GAIN, PERSONALIZED_WITHIN = 0.10, 0.02, 0.03, 0.02


def _personalized(metrics: dict[str, dict], name: str) -> float:
    return (metrics[name].get("personalized_acc") or {"mean": 0.0})["mean"]


def compared_models(metrics: dict[str, dict], naive_models: tuple[str, ...] = NAIVE,
                    baselines: tuple[str, ...] = BASELINES) -> tuple[str, str]:
    """The models claims 1 and 4 are judged against: the naive baseline that misaligned personas hurt
    most, and the baseline with the best personalized accuracy (the verdict and its interval use both)."""
    worst = max(naive_models, key=lambda n: metrics[n]["interference"]["misaligned"])
    return worst, max(baselines, key=lambda n: _personalized(metrics, n))


def claims(metrics: dict[str, dict], diffs: dict[str, dict] | None = None, naive_models: tuple[str, ...] = NAIVE,
           baselines: tuple[str, ...] = BASELINES) -> list[tuple[bool, str]]:
    """(holds?, sentence) for each claim the demo is meant to reproduce; ``diffs`` adds paired CIs.
    ``naive_models`` / ``baselines``: the models claims 1 and 4 compare with (a study that trains fewer
    baselines passes the ones it has)."""
    diffs = diffs or {}
    acc = lambda n, c: metrics[n]["acc"][c]["mean"]  # noqa: E731
    pers = lambda n: _personalized(metrics, n)  # noqa: E731
    worst, best = compared_models(metrics, naive_models, baselines)
    loss = metrics[worst]["interference"]["misaligned"]
    out = [(loss >= NAIVE_LOSS, f"Interference is real for the naive baselines: {worst} loses "
            f"{100 * loss:.1f} points under misaligned personas (goal >= 10).")]
    d = "rl_dual"
    out.append((acc(d, "misaligned") >= acc(d, "none") - NEAR_FREE, f"PersonaDual (dual SFT + DualGRPO) is near "
                f"interference-free: {100 * acc(d, 'misaligned'):.1f}% misaligned vs {100 * acc(d, 'none'):.1f}% no persona (goal: within 2 points)."))
    out.append((acc(d, "helpful") >= acc(d, "none") + HELPFUL_GAIN, f"It gains from helpful personas: "
                f"{100 * acc(d, 'helpful'):.1f}% vs {100 * acc(d, 'none'):.1f}% (goal: +3 points)."))
    out.append((pers(d) >= pers(best) - PERSONALIZED_WITHIN, f"Its personalized accuracy {100 * pers(d):.1f}% is within 2 points "
                f"of the best personalized baseline ({best}: {100 * pers(best):.1f}%) or above."))
    sft = {k: (metrics["sft_dual"].get(k) or 0.0, metrics[d].get(k) or 0.0) for k in ("hacc", "balanced_acc")}
    out.append((all(after > before for before, after in sft.values()), "DualGRPO improves on its SFT start: " +
                ", ".join(f"{k} {100 * b:.1f} -> {100 * a:.1f}" for k, (b, a) in sft.items()) +
                _ci(diffs.get("sft_dual"), "balanced-accuracy gain") + "."))
    return out


def claim_intervals(eval_dir: Path, metrics: dict[str, dict], diffs: dict[str, dict] | None = None,
                    naive_models: tuple[str, ...] = NAIVE, baselines: tuple[str, ...] = BASELINES) -> list[dict | None]:
    """Per claim (in `claims`' order), the paired 95% interval of the statistic it compares with its goal,
    and the goal: ``{"lo", "hi", "mean", "n", "goal"}``, or None where there is none to give.

    A claim whose goal lies inside its interval is not decided by this test split: its verdict would
    flip on another draw of the same size (`undecided`). Claim 5 needs both HAcc and balanced accuracy
    to rise, and only balanced accuracy has a paired interval (HAcc's decisive items differ between the
    two models), so where HAcc alone fails, claim 5 gets none."""
    diffs = diffs if diffs is not None else {}
    worst, best = compared_models(metrics, naive_models, baselines)
    correct = {n: load_correct(eval_dir / n) for n in {"rl_dual", worst, best}
               if (eval_dir / n / "predictions.jsonl").exists()}
    if "rl_dual" not in correct:
        return [None] * 5

    def with_goal(interval: dict | None, goal: float) -> dict | None:
        return None if interval is None else {**interval, "goal": goal}

    ours = correct["rl_dual"]
    out = [with_goal(paired_condition_diff(correct[worst], "none", "misaligned"), NAIVE_LOSS) if worst in correct else None,
           with_goal(paired_condition_diff(ours, "misaligned", "none"), -NEAR_FREE),
           with_goal(paired_condition_diff(ours, "helpful", "none"), HELPFUL_GAIN),
           with_goal(paired_item_diff(ours, correct[best], "personalized"), -PERSONALIZED_WITHIN) if best in correct else None]
    bal = diffs.get("sft_dual")
    hacc_up = (metrics["rl_dual"].get("hacc") or 0.0) > (metrics["sft_dual"].get("hacc") or 0.0)
    out.append(with_goal(bal, 0.0) if bal and (hacc_up or bal["lo"] <= 0.0) else None)
    return out


def undecided(interval: dict | None) -> bool:
    """The claim's goal lies inside its paired 95% interval: this split cannot tell pass from fail."""
    return interval is not None and interval["lo"] <= interval["goal"] <= interval["hi"]


def noise_sentence(interval: dict | None, show_span: bool = True) -> str:
    """What a claim's interval says of its verdict; ``show_span=False`` where the claim's sentence already
    gives the interval (claim 5's balanced-accuracy CI)."""
    if interval is None:
        return ""
    span = f"paired 95% interval {100 * interval['lo']:+.1f} to {100 * interval['hi']:+.1f} over {interval['n']} items, "
    span = (span if show_span else "") + f"goal {100 * interval['goal']:+.1f}"
    return (f" Within the test split's noise ({span}): another split of this size could give the other verdict."
            if undecided(interval) else f" Beyond the split's noise ({span}).")


RL_CLAIM = 4  # claims()[RL_CLAIM] is "DualGRPO improves on its SFT start", whose sentence carries its own CI


def measurements(metrics: dict[str, dict], diffs: dict[str, dict] | None = None) -> list[str]:
    """What the demo measures beside the paper's claims, without a verdict: the estimators side by side
    and the mode choice against what any fixed choice could reach."""
    diffs = diffs or {}
    rl = sorted(n for n in metrics if n.startswith("rl_"))  # the RL variants this run trained, rl_dual first
    bal = {n: metrics[n]["balanced_acc"] or 0.0 for n in rl}
    out = ["Estimators on balanced accuracy (objective over all conditions, and personalized): " +
           ", ".join(f"{k} {100 * v:.1f}" for k, v in bal.items()) + "; rl_dual minus " +
           "; minus ".join(f"{r} {100 * (bal['rl_dual'] - bal[r]):+.1f}{_ci(diffs.get(r))}" for r in RIVALS[:2] if r in bal) + "."]
    for n in rl:
        h, oracle, decisive = (metrics[n].get(k) for k in ("hacc", "hacc_cell_oracle", "decisive"))
        if h is None:
            out.append(f"HAcc of {n}: none, the modes never disagree (0 decisive items).")
            continue
        out.append(f"HAcc of {n} (it picks the mode that is right, where the modes disagree): {100 * h:.1f}% on "
                   f"{decisive} decisive items" + (f"; {CELL_ORACLE} on these items, would score {100 * oracle:.1f}%"
                                                  if oracle is not None else "") + ".")
    return out


def demo_report(metrics: dict[str, dict], out: Path, env: dict | None = None, checks: dict[str, dict] | None = None) -> str:
    n = next(iter(metrics.values()))["n"]
    lines = [
        "# PersonaDual on PersonaBench: the paper's effect on a laptop CPU", "", environment_line(env), "",
        "A persona in the prompt helps when it carries a true signal and hurts when it does not. PersonaDual "
        "trains one model with two reasoning modes -- general (set the persona aside) and personalized (use "
        "it) -- and lets the model pick the mode per question. Below, a ~1M-parameter model trained on the "
        f"embedded PersonaBench, evaluated on {n} held-out test items (held-out names, roles and persona "
        "wordings). Accuracies in %.", "",
        "How to read the table: *none* is the question alone; *irrelevant*, *misaligned* (the persona pulls "
        "toward a wrong option), *helpful* (its knowledge is true) and *ambiguous* (it contradicts itself) add "
        "a persona to the same questions. *interference* = none - misaligned; *helpful gain* = helpful - none; "
        "*HAcc* = how often the chosen mode is the one that is right, where the two modes disagree.", "",
        comparison_table(metrics), "",
        "Models: `base_plain` is the pretrained model before stage 1 (no personas, no markers), read as any "
        "model is (plain protocol); `sft_*` are stage-1 variants (the paper's ablations); `rl_*` start from "
        "`sft_dual` and differ only in the advantage estimator; `upper_bound_no_persona` is `rl_dual` with every "
        "persona removed.", "",
        "## The paper's claims, checked", "",
    ]
    diffs = paired_diffs(out / "eval") if all((out / "eval" / n / "predictions.jsonl").exists()
                                              for n in ("rl_dual", "sft_dual")) else {}
    intervals = claim_intervals(out / "eval", metrics, diffs) if diffs else [None] * 5
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}{noise_sentence(iv, show_span=k != RL_CLAIM)}"
              for k, ((ok, text), iv) in enumerate(zip(claims(metrics, diffs), intervals))]
    lines += ["", "## Stage checks (val)", "",
              "A dual model whose forced modes never disagree cannot be improved by choosing between them; each "
              "model RL starts from or produces is checked on val before its claims are read.", ""]
    lines += stage_check_lines(checks or {})
    lines += ["", "A claim compares point estimates; the paired 95% intervals (items resampled within each persona "
              "condition, the same items for both models) say whether a difference is larger than the test "
              "split's noise.", "", "## Measured beside the claims", ""]
    lines += [f"- {text}" for text in measurements(metrics, diffs)]
    lines += ["", "## Plots", "", "![accuracy](report/accuracy_by_condition.png)", "",
              "![mode share](report/mode_share.png)", "", "![trade-off](report/tradeoff.png)", "",
              "![calibration](report/calibration.png)", "",
              "Per-model details (per family, CIs, calibration) are in `eval/<model>/report.md`; every prediction "
              "is in `eval/<model>/predictions.jsonl`."]
    return "\n".join(lines) + "\n"


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    conds = ("none", "irrelevant", "misaligned", "helpful", "ambiguous")
    t = Table(title="PersonaDual demo (test split, accuracy %)")
    t.add_column("model", no_wrap=True, min_width=24)
    for col in (*conds, "personalized", "HAcc", "format err"):
        t.add_column(col, justify="right")
    fmt = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
    for name, e in summary.items():
        if not isinstance(e, dict) or "acc" not in e:  # stage_seconds, environment, stage_checks
            continue
        t.add_row(name, *(fmt(e["acc"].get(c)) for c in conds), fmt(e["personalized_acc"]), fmt(e["hacc"]),
                  fmt(e["format_error_rate"]))
    Console(width=140).print(t)
    Console(width=140).print("stage seconds: " + ", ".join(f"{k} {v}" for k, v in summary["stage_seconds"].items()))

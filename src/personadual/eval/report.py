"""Markdown reports (one model, or several compared); the PNG plots they link are drawn in plots.py."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.schema import OBJECTIVE_CONDITIONS
from .plots import plots

CONDS = [c for c in OBJECTIVE_CONDITIONS]
CELL_ORACLE = "the best fixed mode per task family and persona condition, chosen with hindsight"  # hacc_cell_oracle


def percent(x) -> str:
    """A fraction as a percentage, shared by every report table so they read alike: "-" when missing,
    ``mean [lo-hi]`` for a value with its interval."""
    if x is None:
        return "-"
    if isinstance(x, dict):
        return f"{100 * x['mean']:.1f} [{100 * x['lo']:.0f}-{100 * x['hi']:.0f}]"
    return f"{100 * x:+.1f}" if isinstance(x, float) and x < 0 else f"{100 * x:.1f}"


def protocol(m: dict) -> str:
    """How the model was asked: "modes" (the mode protocol), "plain" or "choice"; metrics written before
    plain evaluations existed carry no key and are all "modes"."""
    return m.get("protocol") or "modes"


def protocol_label(m: dict) -> str:
    """The protocol as the comparison shows it: an endpoint when the answers came through one, the
    forms a choice evaluation scored ("choice (text+letter)": some items had no option texts)."""
    if protocol(m) == "choice":
        return f"choice ({'+'.join((m.get('choice') or {}).get('items_by_form') or ['?'])})"
    return f"{protocol(m)} via endpoint" if m.get("endpoint") else protocol(m)


def _setting(m: dict) -> str:
    """The report's first sentence's parenthesis: what was run and how."""
    how = {"plain": "plain prompts, no mode protocol",
           "choice": f"options scored by log-likelihood, nothing generated, mode {m.get('requested_mode')}"}.get(
        protocol(m), f"mode {m.get('requested_mode')}")
    return (f"{m['n']} items, {how}{', through ' + m['endpoint'] if m.get('endpoint') else ''}"
            f"{', personas removed' if m.get('drop_persona') else ''}")


def _condition_table(m: dict) -> list[str]:
    """Accuracy per persona condition, with the personalized-mode share beside it when modes were read."""
    shares = m.get("mode_share")
    share = (lambda c: f" {percent(shares.get(c, {}).get('personalized', 0.0))} |") if shares else (lambda c: "")
    lines = ["| persona condition | accuracy |" + (" personalized-mode share |" if shares else ""),
             "|---|---|" + ("---|" if shares else "")]
    lines += [f"| {c} | {percent(m['acc'][c])} |{share(c)}" for c in CONDS if c in m["acc"]]
    return lines + [f"| personalized items | {percent(m['personalized_acc'])} |{share('personalized')}"]


def _findings(m: dict) -> list[str]:
    """The bullet lines under the table; each mode measure only where the metrics have it."""
    inter = m.get("interference") or {}
    lines = [f"- interference (none - misaligned): {_pts(inter.get('misaligned'))}; "
             f"(none - irrelevant): {_pts(inter.get('irrelevant'))}",
             f"- helpful gain (helpful - none): {_pts(m.get('helpful_gain'))}"]
    lines += _pull_lines(m)
    bal = f"- balanced accuracy: {percent(m.get('balanced_acc'))}"
    # for plain answers the two rates are one; a scored answer is always well formed
    if not (protocol(m) == "plain" and m.get("unreadable")) and protocol(m) != "choice":
        bal += f"; format errors: {percent(m.get('format_error_rate'))}%"
    if m.get("preferred_mode_agreement") is not None:
        bal += f"; agreement with the data's preferred mode: {percent(m['preferred_mode_agreement'])}%"
    lines.append(bal)
    if m.get("unreadable"):
        u = m["unreadable"]
        lines.append(f"- unreadable answers: {u['n']} ({percent(u['rate'])}%), counted as wrong")
    if m.get("hacc") is not None:
        lines.append(f"- HAcc (auto picks the mode that is right, on the {m['decisive']} items where the modes "
                     f"disagree): {percent(m['hacc'])}%"
                     + (f"; {CELL_ORACLE}: {percent(m['hacc_cell_oracle'])}%" if m.get("hacc_cell_oracle") is not None else ""))
    if m.get("marker_mass"):
        mm = m["marker_mass"]
        lines.append(f"- marker mass p(any marker | x) at the first token (the mode is chosen among the markers): "
                     f"mean {mm['mean']}, min {mm['min']}; below 0.5 on {percent(mm['below_half'])}% of items")
    if m.get("calibration"):
        cal = m["calibration"]
        lines.append(f"- p(personalized | x) as a predictor of 'personalized is the better mode': ECE {cal['ece']}, "
                     f"Brier {cal['brier']} (n={cal['n']})")
    return lines


def _pull_cell(x: dict | None) -> str:
    return "-" if not x else f"{100 * x['mean']:+.1f} [{100 * x['lo']:+.1f}, {100 * x['hi']:+.1f}]"


def _shares(d: dict) -> str:
    return ", ".join(f"{k} {100 * v:.1f}%" for k, v in d.items()) or "-"


def _pull_lines(m: dict) -> list[str]:
    """Persona pull, the answers' letters and (choice) what was scored; each where the metrics have it."""
    lines = []
    if m.get("pull"):
        what = "p(target)" if protocol(m) == "choice" else "the rate of answering the target"
        lines.append("- persona pull toward the option the persona points to (with the persona minus without, "
                     f"same question; change in {what}, points, 95% CI): "
                     + "; ".join(f"{c} {_pull_cell(x)} (n={x['n']})" for c, x in m["pull"].items()))
    if (m.get("letters") or {}).get("answers"):
        lines.append(f"- answer letters: {_shares(m['letters']['answers'])} (gold: {_shares(m['letters']['gold'])})")
        if m["letters"].get("one_option"):
            lines.append("- **ONE OPTION**: one letter is over 80% of the answers. This model answers a constant; its "
                         "accuracy here is not a reading of what it knows")
    for form, n in ((m.get("choice") or {}).get("items_by_form") or {}).items():
        lines.append(f"- {form} form on {n} items: {m['choice']['scored'][form]}")
    return lines


def model_report(m: dict) -> str:
    """report.md for one evaluated model, with or without the mode protocol."""
    lines = [f"# {m.get('name', 'model')}: evaluation", "",
             f"Model `{m.get('model')}` on `{m.get('data')}` ({_setting(m)}). Accuracy in % with 95% bootstrap CIs.",
             "", *_condition_table(m), "", *_findings(m),
             "", "## Per task family", "", "| family | " + " | ".join(CONDS) + " | personalized |",
             "|---|" + "---|" * (len(CONDS) + 1)]
    for fam, f in m.get("per_family", {}).items():
        cells = [percent(f["acc"][c]["mean"]) if c in f["acc"] else "-" for c in CONDS]
        pa = f.get("personalized_acc")
        lines.append(f"| {fam} | " + " | ".join(cells) + f" | {percent(pa['mean']) if pa else '-'} |")
    return "\n".join(lines) + "\n"


def _pts(x) -> str:
    return "-" if x is None else f"{100 * x:+.1f} points"


def load_run(run_dir: str | Path) -> dict:
    path = Path(run_dir)
    path = path / "metrics.json" if path.is_dir() else path
    return json.loads(path.read_text())


def load_correct(run_dir: str | Path, run: str = "auto") -> dict[str, tuple[str, bool]]:
    """item id -> (condition, correct) for one run of an eval directory's predictions.jsonl."""
    out = {}
    with open(Path(run_dir) / "predictions.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if row["run"] == run:
                out[row["id"]] = (row["condition"], row["correct"])
    return out


def comparison_table(runs: dict[str, dict]) -> str:
    """One Markdown row per model: protocol, accuracy per condition, personalized, interference, gain, HAcc;
    "-" where a model has no such measure (a plain model has no HAcc)."""
    head = ["model", "protocol", *CONDS, "personalized", "interference", "helpful gain", "HAcc", "balanced", "format err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in runs.items():
        cells = [name, protocol_label(m)] + [percent(m["acc"][c]["mean"]) if c in m["acc"] else "-" for c in CONDS]
        pa = m.get("personalized_acc")
        cells += [percent(pa["mean"]) if pa else "-", _pts((m.get("interference") or {}).get("misaligned")),
                  _pts(m.get("helpful_gain")), percent(m.get("hacc")), percent(m.get("balanced_acc")),
                  percent(m.get("format_error_rate"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pull_table(runs: dict[str, dict]) -> str:
    """Persona pull per model (points toward the persona's target, 95% CI) and its most frequent answer
    letter beside that letter's share of the gold answers; "-" where a model has no such measure."""
    lines = ["| model | protocol | pull: misaligned | pull: helpful | pull: ambiguous | top answer letter |",
             "|---|---|---|---|---|---|"]
    for name, m in runs.items():
        pull, letters = m.get("pull") or {}, m.get("letters") or {}
        answers, gold = letters.get("answers") or {}, letters.get("gold") or {}
        top = max(answers, key=answers.get, default=None)
        cell = f"{top} {100 * answers[top]:.0f}% (gold {100 * gold.get(top, 0):.0f}%)" if top else "-"
        lines.append(f"| {name} | {protocol_label(m)} | " + " | ".join(_pull_cell(pull.get(c))
                                                                     for c in ("misaligned", "helpful", "ambiguous"))
                     + f" | {cell} |")
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs: list[str], out_dir: str | Path, names: list[str] | None = None) -> str:
    """`personadual report`: comparison.md + plots for several evaluated runs."""
    runs = {}
    for i, d in enumerate(run_dirs):
        m = load_run(d)
        runs[(names[i] if names else None) or m.get("name") or Path(d).name] = m
    out_dir = Path(out_dir)
    pngs = plots(runs, out_dir)
    text = ("# PersonaDual comparison\n\n" + comparison_table(runs) + "\n## Persona pull\n\n"
            "Change in the weight on the option the persona points to, with the persona minus without it, on the "
            "same question, in points with a paired 95% CI (choice: its probability; generation: the rate of "
            "answering it).\n\n" + pull_table(runs) + "\n## Plots\n\n") + "\n".join(
        f"![{Path(p).stem}]({Path(p).name})" for p in pngs) + "\n"
    (out_dir / "comparison.md").write_text(text)
    return text

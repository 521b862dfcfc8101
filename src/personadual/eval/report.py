"""Markdown reports (one model, or several compared) and the PNG plots that tell the paper's story."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.schema import OBJECTIVE_CONDITIONS

CONDS = [c for c in OBJECTIVE_CONDITIONS]
CELL_ORACLE = "the best fixed mode per task family and persona condition, chosen with hindsight"  # hacc_cell_oracle


def _pct(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, dict):
        return f"{100 * x['mean']:.1f} [{100 * x['lo']:.0f}-{100 * x['hi']:.0f}]"
    return f"{100 * x:+.1f}" if isinstance(x, float) and x < 0 else f"{100 * x:.1f}"


def model_report(m: dict) -> str:
    """report.md for one evaluated model."""
    lines = [f"# {m.get('name', 'model')}: evaluation", "",
             f"Model `{m.get('model')}` on `{m.get('data')}` ({m['n']} items, mode {m.get('requested_mode')}"
             f"{', personas removed' if m.get('drop_persona') else ''}). Accuracy in % with 95% bootstrap CIs.", "",
             "| persona condition | accuracy | personalized-mode share |", "|---|---|---|"]
    for c in CONDS:
        if c in m["acc"]:
            lines.append(f"| {c} | {_pct(m['acc'][c])} | {_pct(m['mode_share'].get(c, {}).get('personalized', 0.0))} |")
    lines += [f"| personalized items | {_pct(m['personalized_acc'])} | "
              f"{_pct(m['mode_share'].get('personalized', {}).get('personalized', 0.0))} |", "",
              f"- interference (none - misaligned): {_pts(m['interference']['misaligned'])}; "
              f"(none - irrelevant): {_pts(m['interference']['irrelevant'])}",
              f"- helpful gain (helpful - none): {_pts(m['helpful_gain'])}",
              f"- balanced accuracy: {_pct(m['balanced_acc'])}; format errors: {_pct(m['format_error_rate'])}%; "
              f"agreement with the data's preferred mode: {_pct(m['preferred_mode_agreement'])}%"]
    if m.get("hacc") is not None:
        lines.append(f"- HAcc (auto picks the mode that is right, on the {m['decisive']} items where the modes "
                     f"disagree): {_pct(m['hacc'])}%"
                     + (f"; {CELL_ORACLE}: {_pct(m['hacc_cell_oracle'])}%" if m.get("hacc_cell_oracle") is not None else ""))
    if m.get("marker_mass"):
        mm = m["marker_mass"]
        lines.append(f"- marker mass p(any marker | x) at the first token (the mode is chosen among the markers): "
                     f"mean {mm['mean']}, min {mm['min']}; below 0.5 on {_pct(mm['below_half'])}% of items")
    if m.get("calibration"):
        cal = m["calibration"]
        lines.append(f"- p(personalized | x) as a predictor of 'personalized is the better mode': ECE {cal['ece']}, "
                     f"Brier {cal['brier']} (n={cal['n']})")
    lines += ["", "## Per task family", "", "| family | " + " | ".join(CONDS) + " | personalized |",
              "|---|" + "---|" * (len(CONDS) + 1)]
    for fam, f in m.get("per_family", {}).items():
        cells = [_pct(f["acc"][c]["mean"]) if c in f["acc"] else "-" for c in CONDS]
        pa = f.get("personalized_acc")
        lines.append(f"| {fam} | " + " | ".join(cells) + f" | {_pct(pa['mean']) if pa else '-'} |")
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
    """One Markdown row per model: accuracy per condition, personalized, interference, gain, HAcc."""
    head = ["model", *CONDS, "personalized", "interference", "helpful gain", "HAcc", "balanced", "format err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in runs.items():
        cells = [name] + [_pct(m["acc"][c]["mean"]) if c in m["acc"] else "-" for c in CONDS]
        pa = m.get("personalized_acc")
        cells += [_pct(pa["mean"]) if pa else "-", _pts(m["interference"]["misaligned"]), _pts(m["helpful_gain"]),
                  _pct(m.get("hacc")), _pct(m.get("balanced_acc")), _pct(m.get("format_error_rate"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(runs: dict[str, dict], out_dir: str | Path) -> list[str]:
    """PNG plots: accuracy by condition, mode share, interference vs personalized, calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names, written = list(runs), []
    cats = CONDS + ["personalized"]

    def acc_of(m, c):
        return (m.get("personalized_acc") if c == "personalized" else m["acc"].get(c)) or {"mean": 0, "lo": 0, "hi": 0}

    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(cats)), 4.5))
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        vals = [acc_of(runs[name], c) for c in cats]
        xs = [i + k * width for i in range(len(cats))]
        ax.bar(xs, [100 * v["mean"] for v in vals], width, label=name,
               yerr=[[100 * (v["mean"] - v["lo"]) for v in vals], [100 * (v["hi"] - v["mean"]) for v in vals]], capsize=2)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(cats))], cats)
    ax.set_ylim(0, 130)  # headroom for the legend above the bars
    ax.set_ylabel("accuracy (%)"), ax.set_title("Accuracy by persona condition (95% CI)")
    ax.legend(fontsize=7, ncol=4, loc="upper center")
    written.append(_save(fig, out_dir / "accuracy_by_condition.png"))

    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(cats)), 4))
    for k, name in enumerate(names):
        share = [runs[name]["mode_share"].get(c, {}).get("personalized", 0.0) for c in cats]
        ax.bar([i + k * width for i in range(len(cats))], [100 * s for s in share], width, label=name)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(cats))], cats)
    ax.set_ylim(0, 130)
    ax.set_ylabel("personalized mode chosen (%)"), ax.set_title("Mode choice by persona condition")
    ax.legend(fontsize=7, ncol=4, loc="upper center")
    written.append(_save(fig, out_dir / "mode_share.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name in names:
        m = runs[name]
        x, y = m["interference"]["misaligned"], (m.get("personalized_acc") or {}).get("mean")
        if x is not None and y is not None:
            ax.scatter(100 * x, 100 * y)
            ax.annotate(name, (100 * x, 100 * y), fontsize=8)
    ax.set_xlabel("interference: acc(none) - acc(misaligned) (points)"), ax.set_ylabel("personalized accuracy (%)")
    ax.set_title("Interference vs personalization (best: top left)")
    written.append(_save(fig, out_dir / "tradeoff.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for name in names:
        cal = runs[name].get("calibration")
        if cal and cal["bins"]:
            ax.plot([b["confidence"] for b in cal["bins"]], [b["frequency"] for b in cal["bins"]], "o-", label=f"{name} (ECE {cal['ece']})")
    ax.set_xlabel("p(personalized | x)"), ax.set_ylabel("share where personalized is the better mode")
    ax.set_title("Calibration of the mode probability"), ax.legend(fontsize=7)
    written.append(_save(fig, out_dir / "calibration.png"))
    return written


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def compare_runs(run_dirs: list[str], out_dir: str | Path, names: list[str] | None = None) -> str:
    """`personadual report`: comparison.md + plots for several evaluated runs."""
    runs = {}
    for i, d in enumerate(run_dirs):
        m = load_run(d)
        runs[(names[i] if names else None) or m.get("name") or Path(d).name] = m
    out_dir = Path(out_dir)
    pngs = plots(runs, out_dir)
    text = "# PersonaDual comparison\n\n" + comparison_table(runs) + "\n" + "\n".join(
        f"![{Path(p).stem}]({Path(p).name})" for p in pngs) + "\n"
    (out_dir / "comparison.md").write_text(text)
    return text

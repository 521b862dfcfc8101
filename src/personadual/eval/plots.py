"""The comparison's PNG plots: accuracy by persona condition, mode share, the interference trade-off and
the calibration of the mode probability.

Figures are built on their own Agg canvas rather than through pyplot, so drawing a report neither
switches the process's backend nor leaves figures open in pyplot's registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..data.schema import OBJECTIVE_CONDITIONS

CATS = [*OBJECTIVE_CONDITIONS, "personalized"]
MIN_SPAN = 5.0  # points: the smallest axis range, so models a fraction of a point apart are not drawn far apart
LABEL_FONTSIZE = 8


def spread_labels(ys: Sequence[float], gap: float, lo: float | None = None, hi: float | None = None) -> list[float]:
    """Heights for the labels of points at heights ``ys`` (any one unit), in the order given.

    No two positions are closer than ``gap``, the labels keep the order of their points (ties by input
    order), and the positions are as close to their points as that allows: they minimise the sum of
    squared distances to ``ys``. A lone label, or labels already ``gap`` apart, sit at their points.
    With ``lo``/``hi`` every position also stays within [lo, hi]; ValueError when the labels cannot fit.
    """
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    n = len(ys)
    order = sorted(range(n), key=lambda i: (ys[i], i))
    # Lowering the k-th label by k gaps turns "at least a gap apart" into "non-decreasing": an isotonic
    # regression, which pooling adjacent violators solves exactly.
    blocks: list[list[float]] = []  # [sum, count] of the pooled targets
    for k, i in enumerate(order):
        blocks.append([ys[i] - k * gap, 1])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    shifted = [s / c for s, c in blocks for _ in range(int(c))]
    floor = float("-inf") if lo is None else lo
    ceil = float("inf") if hi is None else hi - (n - 1) * gap
    if n and floor > ceil:
        raise ValueError(f"{n} labels {gap} apart do not fit between {lo} and {hi}")
    out = [0.0] * n
    for k, i in enumerate(order):  # clipping a monotone solution keeps it the best one within the bounds
        out[i] = min(max(shifted[k], floor), ceil) + k * gap
    return out


def colours(runs: dict[str, dict]) -> dict[str, str]:
    """One colour per model, by its place in the comparison, so a model looks the same in every plot."""
    return {name: f"C{k % 10}" for k, name in enumerate(runs)}


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _acc(m: dict, cat: str) -> dict:
    return (m.get("personalized_acc") if cat == "personalized" else m["acc"].get(cat)) or {"mean": 0, "lo": 0, "hi": 0}


def _grouped_bars(ax, runs: dict[str, dict], value, ylabel: str, title: str, errors=None) -> None:
    """One group of bars per persona condition, one bar per model; the y range leaves room for the legend."""
    colour, names = colours(runs), [n for n in runs if value(runs[n], CATS[0]) is not None]
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        vals = [value(runs[name], c) for c in CATS]
        ax.bar([i + k * width for i in range(len(CATS))], [100 * v for v in vals], width, label=name,
               color=colour[name], yerr=errors(runs[name]) if errors else None, capsize=2)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(CATS))], CATS)
    ax.set_ylim(0, 130)
    ax.set_ylabel(ylabel), ax.set_title(title)
    if names:
        ax.legend(fontsize=7, ncol=4, loc="upper center")
    else:
        ax.text(0.5, 0.5, "no model here has this measure", transform=ax.transAxes, ha="center")


def accuracy_figure(runs: dict[str, dict]):
    """Accuracy per persona condition with 95% CIs, every model."""
    def errors(m):
        vals = [_acc(m, c) for c in CATS]
        return [[100 * (v["mean"] - v["lo"]) for v in vals], [100 * (v["hi"] - v["mean"]) for v in vals]]

    fig = _figure((max(8, 1.6 * len(CATS)), 4.5))
    _grouped_bars(fig.add_subplot(), runs, lambda m, c: _acc(m, c)["mean"], "accuracy (%)",
                  "Accuracy by persona condition (95% CI)", errors)
    return fig


def mode_share_figure(runs: dict[str, dict]):
    """How often the personalized mode is chosen; models evaluated without the mode protocol have no bar."""
    def share(m, c):
        return None if not m.get("mode_share") else m["mode_share"].get(c, {}).get("personalized", 0.0)

    fig = _figure((max(8, 1.6 * len(CATS)), 4))
    _grouped_bars(fig.add_subplot(), runs, share, "personalized mode chosen (%)", "Mode choice by persona condition")
    return fig


def _tradeoff_points(runs: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """name -> (interference, personalized accuracy) in points, for the models that have both."""
    out = {}
    for name, m in runs.items():
        x, y = (m.get("interference") or {}).get("misaligned"), (m.get("personalized_acc") or {}).get("mean")
        if x is not None and y is not None:
            out[name] = (100 * x, 100 * y)
    return out


def _text_size(fig, texts: Sequence[str], fontsize: float) -> tuple[float, float]:
    """Width and height in inches of the widest and the tallest of ``texts``, as the figure would draw them."""
    renderer, w, h = fig.canvas.get_renderer(), 0.0, 0.0
    for s in texts:
        t = fig.text(0, 0, s, fontsize=fontsize)
        box = t.get_window_extent(renderer)
        w, h = max(w, box.width / fig.dpi), max(h, box.height / fig.dpi)
        t.remove()
    return w, h


def _limits(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values, default=0.0), max(values, default=0.0)
    half = max(hi - lo, MIN_SPAN) / 2 * 1.15
    return (lo + hi) / 2 - half, (lo + hi) / 2 + half


def tradeoff_figure(runs: dict[str, dict]):
    """Interference against personalized accuracy, one point per model, plain models included.

    Labels stand in a column right of the axes, in the order of their points' heights and at least a
    label's height apart (``spread_labels``), each joined to its point by a thin line: however many
    models sit close together, no two labels overlap. The axes grow taller with the number of models, and
    the layout is fixed in inches so that nothing (tight_layout included) moves the labels afterwards.
    """
    pts, colour = _tradeoff_points(runs), colours(runs)
    fig = _figure((6, 5))
    label_w, label_h = _text_size(fig, list(pts), LABEL_FONTSIZE)
    gap, pad = 1.3 * label_h, 0.35  # pad: inches between the axes and the label column
    left, bottom, top, right = 0.85, 0.65, 0.45, pad + label_w + 0.15
    ax_w, ax_h = 4.6, max(3.6, len(pts) * gap + label_h)
    width, height = left + ax_w + right, bottom + ax_h + top
    fig.set_size_inches(width, height)
    ax = fig.add_axes((left / width, bottom / height, ax_w / width, ax_h / height))
    for name, (x, y) in pts.items():
        ax.scatter([x], [y], color=colour[name], s=24, zorder=3)
    ax.set_xlim(*_limits([x for x, _ in pts.values()]))
    ax.set_ylim(*_limits([y for _, y in pts.values()]))
    to_axes = ax.transData + ax.transAxes.inverted()
    at = {name: to_axes.transform(p) for name, p in pts.items()}
    heights = spread_labels([at[n][1] * ax_h for n in pts], gap, lo=label_h / 2, hi=ax_h - label_h / 2)
    label_x = 1 + pad / ax_w
    for name, h in zip(pts, heights):
        ax.plot([at[name][0], label_x - 0.05 / ax_w], [at[name][1], h / ax_h], transform=ax.transAxes,
                color=colour[name], lw=0.6, clip_on=False)
        ax.text(label_x, h / ax_h, name, transform=ax.transAxes, fontsize=LABEL_FONTSIZE, va="center", ha="left")
    if not pts:
        ax.text(0.5, 0.5, "no model here has both measures", transform=ax.transAxes, ha="center")
    ax.set_xlabel("interference: acc(none) - acc(misaligned) (points)"), ax.set_ylabel("personalized accuracy (%)")
    ax.set_title("Interference vs personalization (best: top left)")
    return fig


def calibration_figure(runs: dict[str, dict]):
    """Reliability diagram of p(personalized | x); models without a calibration (plain ones) are left out."""
    fig = _figure((5, 5))
    ax, colour, shown = fig.add_subplot(), colours(runs), 0
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for name, m in runs.items():
        cal = m.get("calibration")
        if cal and cal.get("bins"):
            ax.plot([b["confidence"] for b in cal["bins"]], [b["frequency"] for b in cal["bins"]], "o-",
                    color=colour[name], label=f"{name} (ECE {cal['ece']})")
            shown += 1
    ax.set_xlabel("p(personalized | x)"), ax.set_ylabel("share where personalized is the better mode")
    ax.set_title("Calibration of the mode probability")
    if shown:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no model here has a calibration", transform=ax.transAxes, ha="center")
    return fig


def plots(runs: dict[str, dict], out_dir: str | Path) -> list[str]:
    """PNG plots: accuracy by condition, mode share, interference vs personalized, calibration.

    All four are written whatever the models, so a report that links them by name never breaks; a plot
    none of the models has a measure for says so.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_save(accuracy_figure(runs), out_dir / "accuracy_by_condition.png"),
            _save(mode_share_figure(runs), out_dir / "mode_share.png"),
            _save(tradeoff_figure(runs), out_dir / "tradeoff.png", tight=False),
            _save(calibration_figure(runs), out_dir / "calibration.png")]


def _save(fig, path: Path, tight: bool = True) -> str:
    """``tight`` is off for figures laid out in inches, which tight_layout would squeeze."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    return str(path)

"""The comparison report: label placement on the trade-off plot, and metrics of plain and endpoint models."""

import itertools

import pytest

from personadual.eval.plots import spread_labels, tradeoff_figure
from personadual.eval.report import comparison_table, compare_runs, model_report, plots, pull_table

CONDS = ("none", "misaligned", "irrelevant", "helpful")
MODE_KEYS = ("mode_share", "preferred_mode_agreement", "marker_mass", "hacc", "decisive", "hacc_cell_oracle",
             "calibration", "forced")


def ci(mean: float, n: int = 10) -> dict:
    return {"mean": round(mean, 4), "lo": round(mean - 0.1, 4), "hi": round(mean + 0.1, 4), "n": n}


def metrics(name: str, acc: float = 0.8, pers: float = 0.6, inter: float = 0.1, plain: bool = False,
            endpoint: str | None = None) -> dict:
    """What summarize() and compute_metrics() write, small; ``plain`` as an evaluation without the mode protocol."""
    m = {"name": name, "n": 10, "acc": {c: ci(acc - (inter if c == "misaligned" else 0.0)) for c in CONDS},
         "personalized_acc": ci(pers), "interference": {"misaligned": inter, "irrelevant": 0.0},
         "helpful_gain": 0.05, "balanced_acc": acc, "format_error_rate": 0.0, "preferred_mode_agreement": 0.9,
         "mode_share": {c: {"general": 0.7, "personalized": 0.3} for c in (*CONDS, "personalized")},
         "per_family": {"math": {"acc": {"none": ci(acc)}, "personalized_acc": None}},
         "hacc": 0.7, "decisive": 4, "hacc_cell_oracle": 0.75,
         "calibration": {"ece": 0.1, "brier": 0.2, "n": 4, "bins": [{"confidence": 0.3, "frequency": 0.25, "n": 2},
                                                                   {"confidence": 0.8, "frequency": 0.75, "n": 2}]}}
    if plain:
        m = {k: v for k, v in m.items() if k not in MODE_KEYS}
        m.update(protocol="plain", unreadable={"n": 2, "rate": 0.2}, format_error_rate=0.2)
    if endpoint:
        m["endpoint"] = endpoint
        m.setdefault("protocol", "modes")
    return m


# --- label placement, without matplotlib


def test_spread_labels_keeps_a_gap_and_the_order():
    ys = [0.5, 0.52, 0.49, 0.51, 0.5, 3.0, 2.95, 0.0]
    pos = spread_labels(ys, gap=0.3)
    for i, j in itertools.combinations(range(len(ys)), 2):
        assert abs(pos[i] - pos[j]) >= 0.3 - 1e-9
        if ys[i] != ys[j]:
            assert (pos[i] < pos[j]) == (ys[i] < ys[j])
    assert pos[1] > pos[4] > pos[0]  # equal heights keep their input order


def test_spread_labels_leaves_labels_at_their_points_when_they_can():
    assert spread_labels([0.7], gap=5.0) == [0.7]
    assert spread_labels([], gap=1.0) == []
    assert spread_labels([3.0, 0.0, 1.5], gap=1.0) == [3.0, 0.0, 1.5]


def test_spread_labels_is_as_close_as_it_can_be():
    assert spread_labels([1.0, 1.0], gap=1.0) == pytest.approx([0.5, 1.5])  # centred on the pair
    assert spread_labels([0.0, 0.0, 0.0], gap=1.0, lo=0.0) == pytest.approx([0.0, 1.0, 2.0])


def test_spread_labels_stays_within_bounds_or_says_it_cannot():
    pos = spread_labels([0.95, 0.96, 0.97, 0.98], gap=0.1, lo=0.0, hi=1.0)
    assert max(pos) <= 1.0 + 1e-9 and min(pos) >= 0.0
    with pytest.raises(ValueError):
        spread_labels([0.5] * 12, gap=0.1, lo=0.0, hi=1.0)


# --- the trade-off plot as drawn


def assert_labels_legible(fig, n: int) -> None:
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts]
    assert len(texts) == n
    boxes = [t.get_window_extent(renderer) for t in texts]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    page = fig.bbox
    for box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, box


@pytest.mark.parametrize("n", [1, 10, 40])
def test_tradeoff_labels_never_overlap(n):
    runs = {f"model-{i:02d}-{'long-name' * (i % 3)}": metrics(f"m{i}", pers=0.6 + 0.001 * (i % 4), inter=0.1 + 0.002 * (i % 5))
            for i in range(n)}
    fig = tradeoff_figure(runs)
    assert_labels_legible(fig, n)
    assert {t.get_text() for t in fig.axes[0].texts} == set(runs)


def test_tradeoff_figure_grows_with_the_models():
    small = tradeoff_figure({f"m{i}": metrics(f"m{i}") for i in range(2)})
    big = tradeoff_figure({f"m{i}": metrics(f"m{i}") for i in range(60)})
    assert big.get_size_inches()[1] > small.get_size_inches()[1]
    assert_labels_legible(big, 60)


# --- plain and endpoint models


def test_comparison_of_a_plain_and_a_modes_model(tmp_path):
    runs = {"dual": metrics("dual"), "base": metrics("base", plain=True),
            "served": metrics("served", endpoint="http://127.0.0.1:8000/v1")}
    table = comparison_table(runs)
    head, _, dual, base, served = table.splitlines()
    assert "| protocol |" in head
    cols = [c.strip() for c in head.strip("|").split("|")]
    row = {name: [c.strip() for c in line.strip("|").split("|")] for name, line in (("dual", dual), ("base", base))}
    assert row["base"][cols.index("protocol")] == "plain" and row["dual"][cols.index("protocol")] == "modes"
    assert row["base"][cols.index("HAcc")] == "-" and row["dual"][cols.index("HAcc")] == "70.0"
    assert "| modes via endpoint |" in served
    written = plots(runs, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in written] == ["accuracy_by_condition.png", "mode_share.png", "tradeoff.png",
                                                       "calibration.png"]
    assert all((tmp_path / p).stat().st_size > 1000 for p in written)
    assert_labels_legible(tradeoff_figure(runs), 3)  # the plain model is on the trade-off too


def test_plots_of_plain_models_only(tmp_path):
    runs = {"a": metrics("a", plain=True), "b": metrics("b", plain=True, endpoint="http://x/v1")}
    assert len(plots(runs, tmp_path)) == 4


def test_model_report_of_a_plain_model():
    text = model_report(metrics("base", plain=True))
    assert "unreadable answers: 2 (20.0%), counted as wrong" in text
    assert "personalized-mode share" not in text and "preferred mode" not in text and "HAcc" not in text
    assert "| none | 80.0 [70-90] |\n" in text and "plain prompts" in text


def test_model_report_of_a_modes_model_keeps_its_mode_lines():
    text = model_report(metrics("dual", endpoint="http://127.0.0.1:8000/v1"))
    assert "personalized-mode share" in text and "HAcc" in text and "ECE 0.1" in text
    assert "through http://127.0.0.1:8000/v1" in text and "unreadable" not in text


def test_compare_runs_reads_old_metrics_without_a_protocol(tmp_path):
    import json

    for name, m in (("old", metrics("old")), ("plain", metrics("plain", plain=True))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    text = compare_runs([str(tmp_path / "old"), str(tmp_path / "plain")], tmp_path / "rep")
    assert "| old | modes |" in text and "| plain | plain |" in text
    assert (tmp_path / "rep" / "tradeoff.png").exists()


def test_persona_pull_and_answer_letters_in_the_reports():
    m = {k: v for k, v in metrics("small", plain=True).items() if k != "unreadable"}
    m.update(protocol="choice", format_error_rate=0.0,
             choice={"form": "text", "items_by_form": {"text": 8, "letter": 2},
                     "scored": {"text": "option texts after 'Answer:'", "letter": "option letters after 'The answer is ('"}},
             pull={"misaligned": {"mean": 0.055, "lo": 0.012, "hi": 0.098, "n": 40}},
             letters={"answers": {"A": 0.1, "C": 0.9}, "gold": {"A": 0.5, "C": 0.5}, "n": 10})
    text = model_report(m)
    assert "change in p(target)" in text and "misaligned +5.5 [+1.2, +9.8] (n=40)" in text
    assert "- answer letters: A 10.0%, C 90.0% (gold: A 50.0%, C 50.0%)" in text
    assert "- text form on 8 items: option texts after 'Answer:'" in text and "- letter form on 2 items" in text
    assert "format errors" not in text and "options scored by log-likelihood" in text
    generated = {**metrics("dual"), "pull": m["pull"]}
    assert "change in the rate of answering the target" in model_report(generated)
    table = pull_table({"small": m, "old": metrics("old")})
    assert "| small | choice (text+letter) | +5.5 [+1.2, +9.8] | - | - | C 90% (gold 50%) |" in table
    assert "| old | modes | - | - | - | - |" in table  # metrics written before pull existed
    assert "| small | choice (text+letter) |" in comparison_table({"small": m})

import json
import random

import pytest

from personadual.eval.metrics import (balanced_accuracy, bootstrap_ci, calibration, compute_metrics, hacc,
                                      paired_balanced_diff, paired_condition_diff, paired_item_diff)
from personadual.eval.predictions import Prediction


def pred(i, cond, correct, mode="general", p_pers=0.2, family="compare", well_formed=True):
    return Prediction(id=f"x{i}", base_id=f"b{i}", family=family, kind="personalized" if cond == "personalized" else "objective",
                      condition=cond, gold="A", preferred_mode="personalized" if cond in ("helpful", "personalized") else "general",
                      requested_mode="auto", mode=mode, answer="A" if correct else "B", correct=correct,
                      well_formed=well_formed, reason="", p_mode={"general": 1 - p_pers, "personalized": p_pers}, text="")


def test_bootstrap_ci_brackets_the_mean():
    ci = bootstrap_ci([True] * 70 + [False] * 30)
    assert ci["mean"] == 0.7 and ci["lo"] < 0.7 < ci["hi"] and ci["n"] == 100
    assert bootstrap_ci([]) is None


def test_interference_gain_and_balanced_accuracy():
    preds = ([pred(i, "none", i < 8) for i in range(10)] + [pred(i, "misaligned", i < 5) for i in range(10)]
             + [pred(i, "helpful", i < 9, "personalized") for i in range(10)]
             + [pred(i, "personalized", i < 6, "personalized") for i in range(10)])
    m = compute_metrics({"auto": preds}, n_boot=100)
    assert m["interference"]["misaligned"] == pytest.approx(0.3)
    assert m["helpful_gain"] == pytest.approx(0.1)
    assert m["personalized_acc"]["mean"] == 0.6
    assert balanced_accuracy(preds) == pytest.approx(((0.8 + 0.5 + 0.9) / 3 + 0.6) / 2, abs=1e-4)
    assert m["mode_share"]["helpful"]["personalized"] == 1.0
    assert set(m["per_family"]) == {"compare"}


def test_hacc_counts_only_items_where_the_modes_disagree():
    auto = [pred(0, "misaligned", True, "general"), pred(1, "helpful", True, "personalized"),
            pred(2, "none", True, "general"), pred(3, "misaligned", False, "personalized")]
    general = [pred(0, "misaligned", True), pred(1, "helpful", False), pred(2, "none", True), pred(3, "misaligned", True)]
    pers = [pred(0, "misaligned", False), pred(1, "helpful", True), pred(2, "none", True), pred(3, "misaligned", False)]
    h = hacc({"auto": auto, "general": general, "personalized": pers})
    # cells (compare, misaligned): general right twice; (compare, helpful): personalized right once
    assert h == {"hacc": round(2 / 3, 4), "decisive": 3, "tie_share": 0.25, "hacc_cell_oracle": 1.0}


def test_hacc_cell_oracle_takes_each_cells_majority_mode():
    # one cell, four decisive items: general right on three, personalized on one -> no single choice beats 3/4
    rights = ["general", "general", "general", "personalized"]
    auto = [pred(i, "none", True, "general") for i in range(4)]
    general = [pred(i, "none", r == "general") for i, r in enumerate(rights)]
    pers = [pred(i, "none", r == "personalized") for i, r in enumerate(rights)]
    h = hacc({"auto": auto, "general": general, "personalized": pers})
    assert h["hacc"] == 0.75 and h["hacc_cell_oracle"] == 0.75
    other_family = [pred(9, "none", True, "general", family="lookup")]
    h2 = hacc({"auto": auto + other_family, "general": general + [pred(9, "none", False, family="lookup")],
               "personalized": pers + [pred(9, "none", True, family="lookup")]})
    assert h2["hacc"] == 0.6 and h2["hacc_cell_oracle"] == 0.8  # the lookup cell's own majority is personalized


def test_calibration_of_the_mode_probability():
    auto = [pred(i, "helpful", True, p_pers=0.9) for i in range(5)] + [pred(i, "misaligned", True, p_pers=0.1) for i in range(5)]
    general = [pred(i, "helpful", False) for i in range(5)] + [pred(i, "misaligned", True) for i in range(5)]
    pers = [pred(i, "helpful", True) for i in range(5)] + [pred(i, "misaligned", False) for i in range(5)]
    cal = calibration({"auto": auto, "general": general, "personalized": pers})
    assert cal["n"] == 10 and cal["ece"] == pytest.approx(0.1) and cal["brier"] == pytest.approx(0.01)


def test_evaluate_writes_predictions_metrics_and_report(sft_model, bench_dir, tmp_path):
    from personadual.eval.report import compare_runs
    from personadual.eval.run import evaluate

    m = evaluate(str(sft_model), str(bench_dir / "test.jsonl"), str(tmp_path / "ev"), limit=30, max_new_tokens=48)
    assert (tmp_path / "ev" / "metrics.json").exists() and (tmp_path / "ev" / "report.md").exists()
    rows = [json.loads(x) for x in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 90 and {r["run"] for r in rows} == {"auto", "general", "personalized"}
    assert {r["mode"] for r in rows if r["run"] == "personalized"} == {"personalized"}
    assert "hacc" in m and "tie_share" in m and set(m["acc"]) <= {"none", "irrelevant", "misaligned", "helpful", "ambiguous"}
    assert 0 < m["marker_mass"]["min"] <= m["marker_mass"]["mean"] <= 1 and "marker mass" in (tmp_path / "ev" / "report.md").read_text()
    up = evaluate(str(sft_model), str(bench_dir / "test.jsonl"), str(tmp_path / "up"), limit=30, forced=False,
                  drop_persona=True, max_new_tokens=48, name="upper")
    text = compare_runs([str(tmp_path / "ev"), str(tmp_path / "up")], tmp_path / "rep", ["model", "upper"])
    assert "| model |" in text and "| upper |" in text
    for png in ("accuracy_by_condition", "mode_share", "tradeoff", "calibration"):
        assert (tmp_path / "rep" / f"{png}.png").stat().st_size > 1000
    assert up["drop_persona"] is True


def test_paired_balanced_diff_is_the_difference_of_balanced_accuracies():
    from types import SimpleNamespace

    rng = random.Random(3)
    conds = ["none", "misaligned", "helpful", "personalized"]
    items = [(f"i{k}", conds[k % 4]) for k in range(80)]
    a = {i: (c, rng.random() < 0.8) for i, c in items}
    b = {i: (c, rng.random() < 0.6) for i, c in items}
    as_preds = lambda m: [SimpleNamespace(condition=c, correct=ok) for c, ok in m.values()]  # noqa: E731
    d = paired_balanced_diff(a, b)
    assert d["mean"] == pytest.approx(balanced_accuracy(as_preds(a)) - balanced_accuracy(as_preds(b)), abs=1e-4)
    assert d["lo"] <= d["mean"] <= d["hi"] and d["n"] == 80
    same = paired_balanced_diff(a, a)  # a model against itself: no difference, no noise
    assert same["mean"] == same["lo"] == same["hi"] == 0
    # by hand: none d = (1, 0) -> 0.5; personalized d = (0) -> 0; balanced diff = (0.5 + 0) / 2
    hand = paired_balanced_diff({"x": ("none", True), "y": ("none", False), "z": ("personalized", True)},
                                {"x": ("none", False), "y": ("none", False), "z": ("personalized", True)})
    assert hand["mean"] == 0.25


def test_paired_condition_diff_compares_each_question_with_itself():
    # q0..q9 under none and misaligned; the persona flips q0-q3 to wrong and nothing else
    correct = {f"q{k}-none": ("none", True) for k in range(10)}
    correct.update({f"q{k}-misaligned": ("misaligned", k >= 4) for k in range(10)})
    correct["q99-misaligned"] = ("misaligned", False)  # asked under one condition only: no pair, left out
    d = paired_condition_diff(correct, "misaligned", "none")
    assert d["mean"] == -0.4 and d["n"] == 10 and d["lo"] <= -0.4 <= d["hi"] < 0
    assert paired_condition_diff(correct, "none", "misaligned")["mean"] == 0.4
    # the same per-question differences, however hard each question is: the difficulty cancels
    hard = {k: (c, ok and not k.startswith(("q5-", "q6-"))) for k, (c, ok) in correct.items()}
    hard.update({"q5-misaligned": ("misaligned", False), "q6-misaligned": ("misaligned", False)})
    assert paired_condition_diff(hard, "misaligned", "none")["mean"] == -0.4
    assert paired_condition_diff(correct, "helpful", "none") is None


def test_paired_item_diff_is_one_conditions_accuracy_gap_on_shared_items():
    a = {f"p{k}": ("personalized", k % 2 == 0) for k in range(8)} | {"n0": ("none", False)}
    b = {f"p{k}": ("personalized", True) for k in range(8)} | {"n0": ("none", True)}
    d = paired_item_diff(a, b, "personalized")
    assert d["mean"] == -0.5 and d["n"] == 8 and d["lo"] < -0.5 < d["hi"]
    same = paired_item_diff(b, b, "personalized")
    assert same["lo"] == same["hi"] == 0 and paired_item_diff(a, b, "helpful") is None


def test_scan_errors_tells_an_early_yes_from_a_late_one(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("scan_errors", Path(__file__).parents[1] / "scripts" / "scan_errors.py")
    se = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(se)
    rows = [  # gold C in each; only general-mode rows of scan families count
        ("general", "arith", True, "[General_mode]\n3 + 6 = 9 . A 7 no . B 8 no . C 9 yes . so C ."),
        ("general", "arith", False, "[General_mode]\n3 + 6 = 9 . A 7 no . B 8 yes . so B ."),
        ("general", "convert", False, "[General_mode]\nA 7000 no . B 9000 no . C 8000 no . D 80000 yes . so D ."),
        ("general", "lookup", False, "[General_mode]\nfind Bern . A Oslo no . B Hanoi no . C Bern no ."),
        ("general", "compare", False, "[General_mode]\nfind youngest . start A 27 . B 21 take B 21 ."),
        ("personalized", "arith", False, "[Personalized_mode]\npersona says B . so B ."),
    ]
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(
        json.dumps({"run": r, "family": f, "correct": ok, "text": t, "gold": "C"}) + "\n" for r, f, ok, t in rows))
    assert se.count(run) == {"right": 1, "early": 1, "late": 1, "other": 1}
    se.main([str(run)])
    assert "| 4 | 1 | 1 | 1 | 1 |" in capsys.readouterr().out
    (run / "predictions.jsonl").write_text("{not json\n")
    import pytest

    with pytest.raises(SystemExit, match=r"predictions.jsonl:1: not JSON"):
        se.count(run)

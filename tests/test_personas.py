"""`data personas`: the seeded draws, the checks on each persona, and the resumable run against a
scripted OpenAI-compatible endpoint on loopback."""

import json

import pytest
from fake_endpoint import FakeEndpoint

from personadual.data import Item, read_items, write_items
from personadual.data.loaders import load_source
from personadual.data.options import option_texts
from personadual.data.teach import personas as P
from personadual.data.teach import personas_checks as pc
from personadual.data.teach.traces import load_prompt

MMLU = "tests/fixtures/sources/mmlu.jsonl"


def mmlu():
    return load_source("mmlu", MMLU)


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def opening(name):
    return load_prompt(name).template.split("\n")[0]


class Teacher:
    """A scripted teacher: writes a good persona for what each prompt asks, unless told to misbehave.

    ``behave[(item id, condition)]`` is one of "mentions_gold", "states_letter", "empty", "too_long",
    "verify_other", "http400"; the verifier names the target unless told "verify_other"."""

    def __init__(self, items, seed, behave):
        self.items, self.seed, self.behave, self.written = items, seed, behave, {}

    def item_in(self, content):
        return max((it for it in self.items if it.question in content), key=lambda it: len(it.question))

    def __call__(self, body):
        content = body["messages"][0]["content"]
        item = self.item_in(content)
        if content.startswith(opening("persona_verify")):
            persona = content.split("I am ", 1)[1].split(", my question is:")[0]
            plan = self.written[persona]
            wrong = next(o for o in item.options if o != plan.target)
            return 200, '{"answer": "%s"}' % (wrong if self.behave.get((item.id, plan.condition)) == "verify_other"
                                              else plan.target)
        condition = "misaligned" if content.startswith(opening("persona_misaligned")) else "helpful"
        assert content.startswith(opening(f"persona_{condition}"))
        plan = P.plan_persona(item, condition, self.seed)
        texts, how = option_texts(item), self.behave.get((item.id, condition))
        if how == "http400":
            return 400, "bad request"
        if how == "empty":
            return 200, '{"persona": ""}'
        if plan.kind == "letter":
            persona = f"a student who was told the answer is ({plan.target})"
        else:
            persona = f"a keen amateur who is sure it is {texts[plan.target]}"
        if how == "mentions_gold":
            persona += f" rather than {texts[item.gold]}"
        elif how == "states_letter":
            persona += f", option {plan.target}"
        elif how == "too_long":
            persona = "a man who " + "really " * 70 + f"likes {texts[plan.target]}"
        self.written[persona] = plan
        if (item.id, condition) == ("mmlu-000000", "misaligned"):  # JSON inside prose, with "I am"
            return 200, f'Here you go:\n```json\n{{"persona": "I am {persona}."}}\n```'
        if (item.id, condition) == ("mmlu-000000", "helpful"):  # bare text in quotes, a capital article
            return 200, f'"A{persona[1:]}"'
        return 200, json.dumps({"persona": persona})


def job(tmp_path, seed_for=None):
    """Five applicable items (MMLU and two reworded copies) and two that are not, written to a file."""
    base = mmlu()
    copies = [base[1].model_copy(update={"id": f"copy-{k}", "question": f"Copy {k}: {base[1].question}"})
              for k in (1, 2)]
    others = [base[0].model_copy(update={"id": "has-persona", "condition": "irrelevant", "persona": "a gardener"}),
              Item(id="pers", kind="personalized", family="alignx", condition="personalized", question="Tea?\nA. Yes\nB. No",
                   options=["A", "B"], gold="A", persona="a tea lover")]
    items = base + copies + others
    write_items(tmp_path / "in.jsonl", items)
    seed = next(s for s in range(200) if all(seed_for(items, s))) if seed_for else 0
    return items, seed


BEHAVE = {("mmlu-000001", "misaligned"): "mentions_gold", ("mmlu-000001", "helpful"): "states_letter",
          ("mmlu-000002", "misaligned"): "verify_other", ("mmlu-000002", "helpful"): "http400",
          ("copy-1", "misaligned"): "empty", ("copy-2", "helpful"): "too_long"}
REASONS = {"mentions_gold": 1, "states_letter": 1, "verify_other_letter": 1, "empty": 1, "too_long": 1}


def test_personas_are_checked_kept_rejected_by_reason_and_resumed(tmp_path):
    # a seed where "states a letter" is tested in a kind that may not (a letter kind must name one)
    items, seed = job(tmp_path, lambda items, s: [P.plan_persona(items[1], "helpful", s).kind != "letter",
                                                  P.plan_persona(items[0], "misaligned", s).kind != "letter"])
    behave = dict(BEHAVE)
    teacher = Teacher(items, seed, behave)
    fake = FakeEndpoint(teacher)
    cfg = P.PersonasConfig(fake.url, "teacher", tmp_path / "in.jsonl", tmp_path / "out.jsonl", api_key="k",
                           concurrency=3, retries=0, seed=seed, progress=False)
    try:
        s = P.write_personas(cfg)
        assert (s["items"], s["not_applicable"], s["total"], s["skipped"]) == (7, 2, 10, 0)
        assert (s["kept"], s["rejected"], s["failed"]) == (4, 5, 1)
        assert s["rejected_by_reason"] == REASONS
        rejected = {r["id"]: r for r in lines(cfg.rejected)}
        assert {r["reason"] for r in rejected.values()} == set(REASONS) and len(rejected) == 5
        assert set(rejected) == {f"{i}-{c}" for (i, c), how in BEHAVE.items() if how != "http400"}
        assert all(r["reply"] and r["kind"] and r["condition"] in P.CONDITIONS for r in rejected.values())
        assert rejected["mmlu-000002-misaligned"]["verify_reply"] == '{"answer": "B"}'

        by_id = {it.id: it for it in items}
        kept = read_items(cfg.out)
        assert sorted(it.id for it in kept) == ["copy-1-helpful", "copy-2-misaligned", "mmlu-000000-helpful",
                                                "mmlu-000000-misaligned"]
        for it in kept:
            src = by_id[it.base_id]
            assert it.id == f"{src.id}-{it.condition}" and it.question == src.question and it.gold == src.gold
            assert (it.persona_pull == it.gold) == (it.condition == "helpful")
            assert it.persona_pull == P.plan_persona(src, it.condition, seed).target
            assert it.preferred_mode == ("personalized" if it.condition == "helpful" else "general")
            assert it.meta["persona_source"] == "teacher" and it.meta["persona_teacher"] == "teacher"
            assert it.meta["persona_kind"] == P.plan_persona(src, it.condition, seed).kind
        first = {it.id: it.persona for it in kept}
        assert first["mmlu-000000-misaligned"] == "a keen amateur who is sure it is " + option_texts(by_id["mmlu-000000"])[
            P.plan_persona(by_id["mmlu-000000"], "misaligned", seed).target]  # "I am" and the period are gone
        assert first["mmlu-000000-helpful"].startswith("a ")  # quotes gone, article lower-cased

        behave.pop(("mmlu-000002", "helpful"))  # the endpoint takes it now: the rerun does only that one
        n = len(fake.requests)
        s2 = P.write_personas(cfg)
        assert (s2["skipped"], s2["kept"], s2["rejected"], s2["failed"]) == (9, 1, 0, 0)
        assert len(fake.requests) == n + 2  # its persona and its verification, nothing else
        assert all(by_id["mmlu-000002"].question in b["messages"][0]["content"] for b in fake.requests[n:])
        n = len(fake.requests)
        assert P.write_personas(cfg)["skipped"] == 10 and len(fake.requests) == n
        out_ids = [r["id"] for r in lines(cfg.out)]
        assert len(out_ids) == len(set(out_ids)) == 5 and len(lines(cfg.rejected)) == 5
    finally:
        fake.close()


def test_without_verification_no_second_request_is_made(tmp_path):
    items, seed = job(tmp_path)
    teacher = Teacher(items, seed, {("mmlu-000002", "misaligned"): "verify_other"})
    fake = FakeEndpoint(teacher)
    cfg = P.PersonasConfig(fake.url, "teacher", tmp_path / "in.jsonl", tmp_path / "out.jsonl", api_key="k",
                           retries=0, verify=False, conditions=("misaligned",), limit=3, progress=False)
    try:
        s = P.write_personas(cfg)
        assert (s["total"], s["kept"], s["rejected"]) == (3, 3, 0)
        assert len(fake.requests) == 3 and not any(b["messages"][0]["content"].startswith(opening("persona_verify"))
                                                   for b in fake.requests)
        assert {it.condition for it in read_items(cfg.out)} == {"misaligned"}
    finally:
        fake.close()


def test_cli_fatal_401_stops_with_exit_2_and_a_clear_message(tmp_path):
    from typer.testing import CliRunner

    from personadual.cli import app

    job(tmp_path)
    fake = FakeEndpoint(lambda body: (401, "invalid api key"))
    try:
        r = CliRunner().invoke(app, ["data", "personas", "--endpoint", fake.url, "--model", "teacher", "--api-key", "k",
                                     "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl"),
                                     "--concurrency", "1", "--no-progress"])
        assert r.exit_code == 2, r.output
        assert "refused every request" in r.output and ("invalid api key" in r.output or "401" in r.output)
        assert len(fake.requests) == 1 and not lines(tmp_path / "out.jsonl")
        bad = CliRunner().invoke(app, ["data", "personas", "--endpoint", fake.url, "--model", "teacher",
                                       "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl"),
                                       "--conditions", "misaligned,aligned"])
        assert bad.exit_code == 2 and "conditions must be" in bad.output and len(fake.requests) == 1
    finally:
        fake.close()


def test_cli_failed_personas_exit_1_and_send_the_request_fields(tmp_path):
    from typer.testing import CliRunner

    from personadual.cli import app

    items, seed = job(tmp_path)
    teacher = Teacher(items, seed, {("mmlu-000000", "helpful"): "http400"})
    fake = FakeEndpoint(teacher)
    try:
        r = CliRunner().invoke(app, ["data", "personas", "--endpoint", fake.url, "--model", "teacher", "--api-key", "k",
                                     "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl"),
                                     "--limit", "1", "--retries", "0", "--no-progress",
                                     "--chat-template-kwargs", '{"enable_thinking": false}'])
        assert r.exit_code == 1 and "rerun the same command" in r.output
        summary, _ = json.JSONDecoder().raw_decode(r.output[r.output.index("{\n"):])
        assert (summary["total"], summary["kept"], summary["failed"]) == (2, 1, 1)
        assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in fake.requests)
    finally:
        fake.close()


def test_draws_are_seeded_per_item_and_point_where_they_should():
    items = mmlu()
    plans = {(it.id, c): P.plan_persona(it, c, 7) for it in items for c in P.CONDITIONS}
    assert plans == {(it.id, c): P.plan_persona(it, c, 7) for it in reversed(items) for c in P.CONDITIONS}
    for (iid, c), p in plans.items():
        gold = next(it.gold for it in items if it.id == iid)
        assert (p.target == gold) == (c == "helpful") and p.kind in P.KINDS[c]
    four = items[0]  # four options: the draws must vary with the seed, never landing on gold
    over_seeds = [P.plan_persona(four, "misaligned", s) for s in range(40)]
    assert len({p.target for p in over_seeds}) == 3 and four.gold not in {p.target for p in over_seeds}
    assert {p.kind for p in over_seeds} == set(P.KINDS["misaligned"])
    assert {P.plan_persona(four, "helpful", s).kind for s in range(40)} == set(P.KINDS["helpful"])
    inline = four.model_copy(update={"question": "Unit of charge? A Ampere B Coulomb C Volt D Ohm"})
    assert option_texts(inline) == {}  # texts unknown: only a letter can point to an option
    assert {P.plan_persona(inline, c, s).kind for c in P.CONDITIONS for s in range(20)} == {"letter"}
    assert not P.applies(items[0].model_copy(update={"condition": "irrelevant", "persona": "x"})) and P.applies(items[0])


def planet():
    return mmlu()[1]  # A Venus, B Earth, C Mercury (gold), D Mars


@pytest.mark.parametrize("condition,kind,target,persona,reason", [
    ("misaligned", "belief", "D", "an amateur astronomer who is sure it is Mars", None),
    ("misaligned", "belief", "D", "an amateur astronomer. A colleague swears by mars", None),  # the article "A"
    ("misaligned", "belief", "D", "an amateur astronomer sure it is Mars, not Mercury", "mentions_gold"),
    ("misaligned", "letter", "D", "a student told it is (D), never Mercury", "mentions_gold"),
    ("misaligned", "taste", "D", "an astronomer who is sure it is Mars (D)", "states_letter"),
    ("misaligned", "authority", "D", "a student whose teacher said the answer is D", "states_letter"),
    ("misaligned", "belief", "D", "a poet who loves the night sky", "misses_target"),
    ("misaligned", "belief", "D", "", "empty"),
    ("misaligned", "belief", "D", "a fan of Mars " + "who " * 60, "too_long"),
    ("misaligned", "belief", "D", "a man\n\nwho likes Mars", "not_one_paragraph"),
    ("misaligned", "letter", "D", "a student who was told the answer is option D", None),
    ("misaligned", "letter", "D", "a student who was told the answer is B", "no_target_letter"),
    ("misaligned", "letter", "D", "a student told it is (D), or maybe (B)", "names_other_letter"),
    ("helpful", "expert_checked", "C", "an astronomer who checked that it is Mercury", None),
    ("helpful", "record", "C", "a librarian whose almanac says mercury, not Venus", "mentions_other"),
    ("helpful", "expert_checked", "C", "an astronomer who checked the answer is C", "states_letter"),
    ("helpful", "record", "C", "a librarian with an almanac", "misses_target"),
])
def test_each_check_rejects_what_it_should(condition, kind, target, persona, reason):
    item = planet()
    got, detail = pc.check_persona(pc.clean_persona(persona), condition, kind, target, item.gold, item.options,
                                   option_texts(item))
    assert got == reason, detail
    assert bool(detail) == (reason is not None)


def test_longer_option_texts_are_matched_first():
    texts = {"A": "Ohm", "B": "Ohm meter", "C": "Volt"}
    assert pc.mentioned_options("she measures in ohms and volts", texts) == set()  # whole words only
    assert pc.mentioned_options("she swears by the Ohm meter", texts) == {"B"}
    assert pc.mentioned_options("Ohm, then the Ohm meter", texts) == {"A", "B"}
    assert pc.usable_texts({"A": "None", "B": "none "}) == {}  # same text: only a letter tells them apart


@pytest.mark.parametrize("reply,persona", [
    ('Sure:\n```json\n{"persona": "a baker who trusts Mars"}\n```', "a baker who trusts Mars"),
    ('<think>{"persona": "draft"} hmm</think>{"persona": "a baker"}', "a baker"),
    ('"I am a baker who trusts Mars."', "a baker who trusts Mars"),
    ("Persona: I'm The baker of the town", "the baker of the town"),
    ('{"name": "x"} then plain text', '{"name": "x"} then plain text'),
])
def test_replies_are_read_robustly(reply, persona):
    assert pc.clean_persona(pc.read_persona_reply(reply)) == persona


@pytest.mark.parametrize("reply,letter", [('{"answer": "C"}', "C"), ("C", "C"), (" (c). ", "C"), ("Option D.", "D"),
                                           ("<answer> B </answer>", "B"), ("A or B", None), ("no idea", None)])
def test_verdicts_name_exactly_one_letter(reply, letter):
    assert pc.read_verdict(reply, ["A", "B", "C", "D"]) == letter

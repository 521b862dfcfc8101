import pytest
import torch

from personadual import modes
from personadual.data import read_items
from personadual.engine import Engine, GenerationConfig


@pytest.fixture(scope="module")
def engine(sft_model):
    return Engine.load(str(sft_model), device="cpu")


@pytest.fixture(scope="module")
def prompts(bench_dir, engine):
    items = read_items(bench_dir / "val.jsonl")[:12]
    return [modes.render_prompt(engine.tokenizer, it.question, it.persona) for it in items]


def test_forced_mode_puts_the_marker_in_the_completion(engine, prompts):
    cfg = GenerationConfig(max_new_tokens=24)
    for mode in ("general", "personalized"):
        for g in engine.generate(prompts, mode, cfg):
            assert g.forced and g.text.startswith(modes.DEFAULT_MODES.get(mode).marker)
            assert g.mode == mode  # the parsed (scored) completion carries the forced marker


def test_auto_mode_lets_the_model_choose(engine, prompts):
    gens = engine.generate(prompts, "auto", GenerationConfig(max_new_tokens=24))
    # the trained model's own first token, decoded freely, is a marker, and the one auto mode opens with
    ids, mask = engine._batch(engine.prompt_ids(prompts))
    free = engine.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, do_sample=False, top_k=None,
                                 pad_token_id=engine.pad_id)[:, -1].tolist()
    names = dict(zip(engine.marker_ids, engine.modes.names))
    assert [names.get(t) for t in free] == [g.mode for g in gens]
    for g in gens:
        assert not g.forced
        assert g.mode == max(g.p_mode, key=g.p_mode.get)  # greedy: the model's most likely mode
    # and forcing the other mode really overrides that choice
    flipped = ["general" if g.mode == "personalized" else "personalized" for g in gens]
    assert [g.mode for g in engine.generate(prompts, flipped, GenerationConfig(max_new_tokens=4))] == flipped


def test_mode_probs_sum_to_one_and_match_first_step_logits(engine, prompts):
    probs = engine.mode_probs(prompts)
    assert probs.shape == (len(prompts), 2)
    assert torch.allclose(probs.sum(-1), torch.ones(len(prompts)), atol=1e-6)
    enc = engine.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                          add_special_tokens=False)
    out = engine.model.generate(**enc, max_new_tokens=1, do_sample=False, output_logits=True,
                                return_dict_in_generate=True, pad_token_id=engine.tokenizer.pad_token_id)
    first_BV = out.logits[0]
    expected = torch.softmax(first_BV[:, engine.marker_ids].float(), -1)
    assert torch.allclose(probs, expected, atol=1e-5)


def test_batched_equals_one_at_a_time(engine, prompts):
    cfg = GenerationConfig(max_new_tokens=20, batch_size=8)
    batched = [g.text for g in engine.generate(prompts, "auto", cfg)]
    single = [engine.generate([p], "auto", cfg)[0].text for p in prompts]
    assert batched == single


def test_stops_at_end_of_answer_block(engine, prompts):
    cfg = GenerationConfig(max_new_tokens=96)
    gens = engine.generate(prompts, "auto", cfg)
    closed = [g for g in gens if modes.ANSWER_CLOSE in g.text]
    assert len(closed) >= len(gens) // 2  # the trained model closes most answers within the budget
    for g in closed:
        assert g.text.rstrip().endswith(modes.ANSWER_CLOSE)  # nothing generated after the stop string


def test_stop_strings_are_built_once_and_stop_where_transformers_own_path_stops(engine, prompts):
    """The engine builds each set of stop strings into criteria once (transformers would rebuild them from the
    whole vocabulary on every generate call); the texts are the ones transformers' own stop_strings give."""
    free = engine.generate(prompts[:4], "general", GenerationConfig(max_new_tokens=24, stop=()))
    stop = (free[0].text.split("\n", 1)[1][2:5],)  # a piece of the first reasoning line: it stops early
    crit = engine.stopping(stop)
    assert engine.stopping(stop) is crit and engine.stopping(()) is None
    ours = engine.generate(prompts[:4], "general", GenerationConfig(max_new_tokens=24, stop=stop))
    ids, mask = engine._batch(engine.input_ids(prompts[:4], "general"))
    theirs = engine.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False, top_k=None,
                                   stop_strings=list(stop), tokenizer=engine.tokenizer, pad_token_id=engine.pad_id,
                                   eos_token_id=engine.end_ids)[:, ids.shape[1]:]
    end = set(engine.end_ids) | {engine.pad_id}
    for g, row, f in zip(ours, theirs.tolist(), free):
        want = engine.tokenizer.decode([t for t in row if t not in end], skip_special_tokens=False)
        assert g.text == engine.modes.get("general").marker + "\n" + want
        if stop[0] in f.text:
            assert len(g.text) < len(f.text) and stop[0] in g.text  # the token that completes it may hold more


def test_sampling_is_seeded(engine, prompts):
    cfg = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=123)
    assert [g.text for g in engine.generate(prompts, "auto", cfg)] == [g.text for g in engine.generate(prompts, "auto", cfg)]


def test_bad_arguments_are_clear(engine, prompts):
    with pytest.raises(KeyError, match="unknown mode"):
        engine.generate(prompts[:1], "creative")
    with pytest.raises(ValueError, match="2 modes for 1 prompts"):
        engine.generate(prompts[:1], ["general", "general"])
    with pytest.raises(ValueError):
        GenerationConfig(temperature=-1)


def test_forced_runs_reuse_the_auto_runs_mode_probability(engine, bench_dir, monkeypatch):
    from personadual.eval.generation import runs_by_mode

    items = read_items(bench_dir / "val.jsonl")[:12]
    cfg = GenerationConfig(max_new_tokens=24)
    fresh = {m: [g.text for g in engine.generate([modes.render_prompt(engine.tokenizer, it.question, it.persona)
                                                  for it in items], m, cfg)] for m in engine.modes.names}
    calls = []
    real = engine.mode_stats
    monkeypatch.setattr(engine, "mode_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    runs = runs_by_mode(engine, items, cfg)
    assert len(calls) == 1  # one prefill for p(mode | x), not one per run
    for m in engine.modes.names:
        assert [p.text for p in runs[m]] == fresh[m]
        assert [p.p_mode for p in runs[m]] == [p.p_mode for p in runs["auto"]]
    # the auto run is the chosen mode's forced run, item by item (no third generation pass)
    for i, a in enumerate(runs["auto"]):
        assert a.requested_mode == "auto" and a.mode == max(a.p_mode, key=a.p_mode.get)
        assert a.text == runs[a.mode][i].text and 0 < a.marker_mass <= 1 + 1e-6
    auto_now = engine.generate([modes.render_prompt(engine.tokenizer, it.question, it.persona) for it in items], "auto", cfg)
    assert [g.text for g in auto_now] == [a.text for a in runs["auto"]]  # and the engine's own auto path agrees
    with pytest.raises(ValueError, match="p_mode has 1 rows for 2 prompts"):
        engine.generate(["a", "b"], "general", cfg, p_mode=[[0.5, 0.5]])


def test_vllm_backend_missing_is_a_clear_error(sft_model):
    # vllm is a GPU-only extra: in the CPU set-up it is absent and the error must say how to get it
    from personadual.engine import load_engine

    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"personadual\[vllm\]"):
            load_engine(str(sft_model), backend="vllm")
    else:  # pragma: no cover - only on GPU machines with vLLM
        pytest.fail("vllm is installed in the CPU test environment; this test expects the CPU set-up")
    with pytest.raises(ValueError, match="backend: expected one of hf, vllm"):
        load_engine(str(sft_model), backend="tgi")


def test_choose_modes_is_argmax_when_greedy_and_tempered_when_sampled():
    from personadual.engine import choose_modes

    p = [[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]]
    assert choose_modes(p, ["general", "personalized"], 0.0) == ["general", "personalized", "general"]
    torch.manual_seed(0)
    for temperature, expected in ((1.0, 0.8), (0.5, 0.64 / 0.68)):  # p^(1/T), renormalised
        picks = choose_modes([[0.8, 0.2]] * 4000, ["general", "personalized"], temperature)
        assert abs(picks.count("general") / 4000 - expected) < 0.03
    assert choose_modes([], ["general", "personalized"], 0.0) == []


def test_auto_opens_with_a_marker_even_when_rl_leaked_the_markers_mass(engine, prompts):
    """Trap 4 at inference: with the markers' logits pushed below ordinary words, free greedy decoding
    would skip the marker; auto mode still opens with the model's preferred marker, and marker_mass
    says how little mass the markers kept."""
    import copy

    leaky = copy.deepcopy(engine.model)
    with torch.no_grad():
        head = leaky.get_output_embeddings().weight
        head[engine.marker_ids] *= 0.0  # every marker's logit becomes 0
        head[engine.marker_ids[0], 0] = 1e-3  # keep a (tiny) preference: general
    eng = Engine(leaky, engine.tokenizer, engine.modes)
    enc = eng.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                          add_special_tokens=False)
    free = leaky.generate(**enc, max_new_tokens=1, do_sample=False, pad_token_id=eng.tokenizer.pad_token_id)[:, -1]
    assert not any(int(t) in eng.marker_ids for t in free)  # unconstrained, the marker would be skipped
    gens = eng.generate(prompts, "auto", GenerationConfig(max_new_tokens=8))
    assert all(g.mode is not None and g.text.startswith(modes.DEFAULT_MODES.get(g.mode).marker) for g in gens)
    assert all(g.marker_mass < 0.5 for g in gens)
    assert all(g.num_tokens >= 1 for g in gens)  # the chosen marker counts as generated


def _leaky(engine):
    """A copy of the model whose markers' logits are pushed below ordinary words (trap 4)."""
    import copy

    leaky = copy.deepcopy(engine.model)
    with torch.no_grad():
        head = leaky.get_output_embeddings().weight
        head[engine.marker_ids] *= 0.0
        head[engine.marker_ids[1], 0] = 0.05  # a preference the auto choice must see: personalized
    return Engine(leaky, engine.tokenizer, engine.modes)


def test_vllm_engine_scores_every_marker_and_matches_the_hf_engine(engine, prompts, monkeypatch):
    """The vLLM engine against a stand-in that answers as vLLM does (raw top-k log-probs over the whole
    vocabulary, prompt log-probs, greedy decoding). The markers sit outside the top k of the leaky model,
    so p(mode | x) read from ``logprobs=k`` would be 0 for both; read from prompt log-probs it must equal
    the HF engine's, marker mass included, and auto rows must open with the marker it picks."""
    import sys

    import fake_vllm

    hf = _leaky(engine)
    fake = fake_vllm.module(hf.model, hf.tokenizer)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from personadual.engine.vllm_engine import VLLMEngine

    eng = VLLMEngine("unused", engine.modes)
    top = hf.model(**hf.tokenizer(prompts[:1], return_tensors="pt")).logits[0, -1].topk(len(hf.marker_ids)).indices
    assert not set(top.tolist()) & set(hf.marker_ids)  # the case a top-k read gets wrong
    p_hf, mass_hf = hf.mode_stats(prompts)
    p_v, mass_v = eng.mode_stats(prompts)
    torch.testing.assert_close(p_v.float(), p_hf, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mass_v.float(), mass_hf, atol=1e-6, rtol=1e-4)
    assert (p_v[:, 1] > p_v[:, 0]).all() and (mass_v < 0.5).all()

    cfg = GenerationConfig(max_new_tokens=12)
    requested = ["auto", "general", "auto"]
    fake.calls.clear()
    gens = eng.generate(prompts[:3], requested, cfg)
    sent = [ids for ids, params in fake.calls if params.prompt_logprobs is None]
    assert sent == hf.input_ids(prompts[:3], requested)  # token ids, never text the server re-tokenizes
    assert [g.mode for g in gens] == ["personalized", "general", "personalized"]
    assert [g.forced for g in gens] == [False, True, False]
    ref = hf.generate(prompts[:3], requested, cfg)
    assert [g.text for g in gens] == [g.text for g in ref]
    assert [g.num_tokens for g in gens] == [g.num_tokens for g in ref]  # an auto row counts its marker and newline
    assert gens[0].num_tokens == ref[0].num_tokens > gens[1].num_tokens - 2
    assert gens[0].marker_mass == pytest.approx(float(mass_hf[0]), abs=1e-6)


def test_vllm_engine_runs_the_plain_protocol_as_the_hf_engine_does(engine, prompts, monkeypatch):
    """A model without modes on vLLM: no p(mode) pass, no opening marker, prompt ids as they are, and the
    same completions and readings as the HF engine in the plain protocol."""
    import sys

    import fake_vllm

    fake = fake_vllm.module(engine.model, engine.tokenizer)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from personadual.engine.vllm_engine import VLLMEngine

    eng = VLLMEngine("unused", engine.modes, protocol="plain")
    hf = Engine(engine.model, engine.tokenizer, None)
    assert eng.protocol == hf.protocol == "plain" and eng.marker_ids == []
    cfg = GenerationConfig(max_new_tokens=12)
    fake.calls.clear()
    gens = eng.generate(prompts[:3], "auto", cfg)
    assert all(params.prompt_logprobs is None for _, params in fake.calls)  # no p(mode) scoring requests
    assert [ids for ids, _ in fake.calls] == hf.prompt_ids(prompts[:3])  # nothing prefilled after the prompt
    ref = hf.generate(prompts[:3], "auto", cfg)
    assert [g.text for g in gens] == [g.text for g in ref]
    assert all(g.p_mode == {} and g.mode is None and g.marker_mass is None for g in gens)
    assert [g.parsed.answer for g in gens] == [g.parsed.answer for g in ref]
    with pytest.raises(ValueError, match="no mode markers"):
        eng.generate(prompts[:1], "general", cfg)

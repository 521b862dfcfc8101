import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from personadual import modes as modes_lib
from personadual.training import COMPLETE, last_complete_checkpoint
from personadual.config import ConfigError, load_config
from personadual.data import read_items
from personadual.sft.config import SFTRunConfig
from personadual.sft.mixes import build_examples

from conftest import sft_overrides


def _sft_cmd(cfg_file, *overrides, resume=False):
    cmd = [sys.executable, "-m", "personadual.cli", "sft", "--config", str(cfg_file), *overrides]
    return cmd + (["--resume"] if resume else [])


def test_mixes_select_the_paper_ablations(bench_dir, tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    items = read_items(bench_dir / "train.jsonl")
    count = lambda mix, marker: sum(marker in ex["completion"] for ex in build_examples(items, mix, tok))  # noqa: E731
    G, P = "[General_mode]", "[Personalized_mode]"
    assert count("general_only", P) == 0 and count("personalized_only", G) == 0
    n_pref_p = sum(it.preferred_mode == "personalized" for it in items)
    assert count("dual", P) == n_pref_p and count("dual", G) == len(items) - n_pref_p
    # personalized_only keeps only verified traces: never the misaligned ones
    n_mis = sum(it.condition == "misaligned" for it in items)
    assert len(build_examples(items, "personalized_only", tok)) <= len(items) - n_mis
    # the naive baseline follows any persona, misaligned included
    assert count("persona_prompted", P) == sum(it.persona is not None for it in items)
    pre = build_examples(items, "pretrain", tok)
    assert pre and not any(G in ex["completion"] or P in ex["completion"] or "I am" in ex["prompt"] for ex in pre)
    # preference items become their persona-free knowledge question (which option is travel gear)
    n_pref = sum(it.family == "preference" for it in items)
    assert sum("which one is" in ex["prompt"] for ex in pre) == n_pref > 0
    assert not any("most popular" in ex["completion"] for ex in pre)
    bad = items[0].model_copy(update={"meta": {"knowledge": {"question": "q"}}})
    with pytest.raises(ValueError, match=f"item {bad.id}: meta.knowledge needs"):
        build_examples([bad], "pretrain", tok)
    for ex in build_examples(items, "dual", tok)[:5]:
        assert ex["completion"].endswith(tok.eos_token) and ex["prompt"].endswith("<|im_start|>assistant\n")


def test_cross_mode_share_adds_verified_other_mode_traces(bench_dir, tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    items = read_items(bench_dir / "train.jsonl")
    plain = build_examples(items, "dual", tok)
    both = build_examples(items, "dual", tok, cross_mode_share=1.0)
    eligible = sum(all(it.trace_correct(m) for m in it.traces) for it in items)
    assert len(both) - len(plain) == eligible > 0  # every item whose other trace is right gets it
    # never a wrong trace: a misaligned item's persona-following trace stays out
    mis = {modes_lib.render_prompt(tok, it.question, it.persona) for it in items if it.condition == "misaligned"}
    assert not any("[Personalized_mode]" in ex["completion"] for ex in both if ex["prompt"] in mis)
    half = len(build_examples(items, "dual", tok, cross_mode_share=0.5)) - len(plain)
    assert 0.3 * eligible < half < 0.7 * eligible


def test_config_errors_name_the_file_and_key(tmp_path):
    f = tmp_path / "sft.yaml"
    f.write_text("model: m\ndata: d\noutput_dir: o\nlerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"sft.yaml: unknown key\(s\) \['lerning_rate'\]"):
        load_config(SFTRunConfig, f)
    with pytest.raises(ConfigError, match="mix: unknown 'both'"):
        load_config(SFTRunConfig, None, ["model=m", "data=d", "output_dir=o", "mix=both"])
    with pytest.raises(ConfigError, match="marker_init: expected one of words, mean, got 'zero'"):
        load_config(SFTRunConfig, None, ["model=m", "data=d", "output_dir=o", "marker_init=zero"])
    cfg = load_config(SFTRunConfig, None, ["model=m", "data=d", "output_dir=o", "lora.r=4"])
    assert cfg.lora.r == 4 and cfg.lora.alpha == 32


def test_knobs_a_mix_without_a_taught_mode_choice_ignores_are_named_in_a_warning(caplog):
    """teach_mode_choice=false already trains every item's both traces, so cross_mode_* settings do nothing
    there: the recipe's own (cross_mode_share 0.5, unverified) must be named, not silently dropped."""
    import logging

    base = ["model=m", "data=d", "output_dir=o"]
    with caplog.at_level(logging.WARNING, logger="personadual.sft.config"):
        load_config(SFTRunConfig, "recipes/tiny-cpu/sft.yaml", base + ["teach_mode_choice=false"])
    warned = [r.getMessage() for r in caplog.records if r.name == "personadual.sft.config"]
    assert len(warned) == 1
    assert "cross_mode_share=0.5" in warned[0] and "cross_mode_unverified=True" in warned[0]
    assert "cross_mode_trains_marker" not in warned[0]  # left at its default: nothing to say
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="personadual.sft.config"):
        load_config(SFTRunConfig, "recipes/tiny-cpu/sft.yaml", base)  # the recipe as it is: knobs in use
        load_config(SFTRunConfig, None, base + ["teach_mode_choice=false"])  # nothing set to ignore
    assert not [r for r in caplog.records if r.name == "personadual.sft.config"]


def test_every_sft_config_field_is_a_recipe_key_checked_by_trl(tmp_path):
    from trl import SFTConfig

    base = ["model=m", "data=d", "output_dir=o"]
    cfg = load_config(SFTRunConfig, None, base + ["max_grad_norm=0.5", "report_to=tensorboard", "packing=true"])
    assert isinstance(cfg, SFTConfig) and (cfg.max_grad_norm, cfg.report_to, cfg.packing) == (0.5, ["tensorboard"], True)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['packng'\]; packng: did you mean \['packing'"):
        load_config(SFTRunConfig, None, base + ["packng=true"])
    with pytest.raises(ConfigError, match="completion_only_loss: personadual trains on completions only"):
        load_config(SFTRunConfig, None, base + ["completion_only_loss=false"])
    with pytest.raises(ConfigError, match="deepspeed: recipes/accelerate/zero3.json needs the deepspeed package"):
        load_config(SFTRunConfig, None, base + ["deepspeed=recipes/accelerate/zero3.json"])
    cfg = load_config(SFTRunConfig, None, base)
    assert (cfg.learning_rate, cfg.seed, cfg.data_seed, cfg.max_length, cfg.completion_only_loss) == (1e-5, 0, 0, 4096, True)


def test_sft_trains_and_saves_resolved_config(sft_model):
    run = sft_model.parent
    assert (run / "config.yaml").exists() and (sft_model / COMPLETE).exists()
    assert (sft_model / "model.safetensors").exists() and (sft_model / "tokenizer.json").exists()


def test_incomplete_checkpoint_is_never_resumed(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / COMPLETE).write_text("2")
    (tmp_path / "checkpoint-4").mkdir()  # killed mid-save: no marker
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert not (tmp_path / "checkpoint-4").exists()


def test_refuses_to_clobber_checkpoints_without_resume(bench_dir, tiny_dir, tmp_path):
    from personadual.sft.train import main

    (tmp_path / "checkpoint-1").mkdir()
    with pytest.raises(FileExistsError, match="--resume"):
        main(load_config(SFTRunConfig, None, sft_overrides(tiny_dir, bench_dir, tmp_path)))


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_weights(bench_dir, tiny_dir, tmp_path):
    cfg_file = tmp_path / "recipe.yaml"
    cfg_file.write_text("mix: dual\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    common = dict(max_steps=12, save_steps=3, save_total_limit=None, learning_rate=1e-3, per_device_train_batch_size=8)

    straight = tmp_path / "straight"
    r = subprocess.run(_sft_cmd(cfg_file, *sft_overrides(tiny_dir, bench_dir, straight, **common)), env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_sft_cmd(cfg_file, *sft_overrides(tiny_dir, bench_dir, killed, **common)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoint-6" / COMPLETE).exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint-6" / COMPLETE).exists(), "run never reached step 6"
    assert not (killed / "model").exists(), "run finished before it was killed"

    r = subprocess.run(_sft_cmd(cfg_file, *sft_overrides(tiny_dir, bench_dir, killed, **common), resume=True),
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout
    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert "\"steps\": 12" in r.stdout


def test_lora_sft_saves_a_merged_plain_model(bench_dir, tiny_dir, tmp_path):
    from personadual.sft.train import main

    before = load_file(tiny_dir / "model.safetensors")
    main(load_config(SFTRunConfig, None, sft_overrides(tiny_dir, bench_dir, tmp_path, max_steps=3, learning_rate=1e-2)
                     + ["lora.r=4", "lora.alpha=8", "lora.dropout=0.0"]))
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert set(after) == set(before)  # merged: no adapter keys, loadable like any model
    proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[proj], after[proj])  # the LoRA update was merged in
    # the markers are new tokens: their embedding rows (tied to the LM head) must train too
    from transformers import AutoTokenizer

    ids = list(modes_lib.marker_token_ids(AutoTokenizer.from_pretrained(tmp_path / "model"), modes_lib.DEFAULT_MODES))
    emb = "model.embed_tokens.weight"
    assert not torch.equal(before[emb][ids], after[emb][ids]) and "lm_head.weight" not in after


def test_reinit_markers_starts_known_markers_at_their_mode_names_rows(tiny_dir):
    """The tiny base has the markers in its vocabulary, untrained (base training never shows them): by
    default they are kept as they are; with reinit each starts at its mode name's rows, the rest untouched."""
    from personadual.training import load_model_and_tokenizer, register_markers

    model, tok = load_model_and_tokenizer(str(tiny_dir))
    ids = modes_lib.marker_token_ids(tok)
    table = model.get_input_embeddings().weight
    before = table.detach().clone()
    assert register_markers(model, tok, modes_lib.DEFAULT_MODES) == ids and torch.equal(table, before)
    register_markers(model, tok, modes_lib.DEFAULT_MODES, reinit=True)
    for i, name in zip(ids, modes_lib.DEFAULT_MODES.names):
        words = tok(" " + name, add_special_tokens=False).input_ids
        assert words and not set(words) & set(ids)
        torch.testing.assert_close(table[i], before[words].mean(dim=0))
    rest = torch.ones(len(table), dtype=torch.bool)
    rest[ids] = False
    assert torch.equal(table[rest], before[rest]) and not torch.equal(table[ids[0]], table[ids[1]])


def test_lora_without_embeddings_keeps_the_embedding_rows(bench_dir, tiny_dir, tmp_path):
    from personadual.sft.train import main

    before = load_file(tiny_dir / "model.safetensors")
    main(load_config(SFTRunConfig, None, sft_overrides(tiny_dir, bench_dir, tmp_path, max_steps=2, learning_rate=1e-2)
                     + ["lora.r=4", "lora.train_embeddings=false"]))
    after = load_file(tmp_path / "model" / "model.safetensors")
    emb = "model.embed_tokens.weight"
    assert torch.equal(before[emb], after[emb][: before[emb].shape[0]])


def test_keys_lists_trls_fields_with_their_help():
    from typer.testing import CliRunner

    from personadual.cli import app

    r = CliRunner().invoke(app, ["keys", "sft", "pack"])
    assert r.exit_code == 0 and "\npacking = False  # " in r.output and "mix =" not in r.output
    r = CliRunner().invoke(app, ["keys", "rl", "marker_mass"])
    assert r.exit_code == 0 and "marker_mass_coef = 0.0  # dual: lambda" in r.output
    assert CliRunner().invoke(app, ["keys", "ppo"]).exit_code == 2


def test_cross_mode_traces_can_take_their_marker_as_context(bench_dir, tiny_dir):
    """With cross_mode_trains_marker off, an item's extra other-mode trace teaches its reasoning after a given
    marker (loss off on the marker token), so the mode choice learns only the preferred mode."""
    from transformers import AutoTokenizer

    from personadual.tokenization import example_ids

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    items = read_items(bench_dir / "train.jsonl")
    trained = build_examples(items, "dual", tok, cross_mode_share=1.0)
    given = build_examples(items, "dual", tok, cross_mode_share=1.0, cross_mode_trains_marker=False)
    assert [e["completion"] for e in given] == [e["completion"] for e in trained]  # the same traces
    extra = [e for e in given if e.get("marker_in_loss") is False]
    assert 0 < len(extra) < len(given) and not any("marker_in_loss" in e for e in trained)
    pref = {modes_lib.render_prompt(tok, it.question, it.persona): it.preferred_mode for it in items}
    markers = {m: modes_lib.DEFAULT_MODES.get(m).marker for m in modes_lib.DEFAULT_MODES.names}
    assert all(not e["completion"].startswith(markers[pref[e["prompt"]]]) for e in extra)  # only the other mode's
    marker_ids = set(modes_lib.marker_token_ids(tok, modes_lib.DEFAULT_MODES))
    for ex, row in zip(given, example_ids(tok, given)):
        marker_at = next(i for i, t in enumerate(row["input_ids"]) if t in marker_ids)
        given_marker = ex.get("marker_in_loss") is False
        assert row["completion_mask"][marker_at] == (0 if given_marker else 1)
        assert row["completion_mask"].index(1) == marker_at + given_marker  # the loss starts right after a given marker
        assert all(row["completion_mask"][marker_at + 1:])


def test_separation_checks_during_sft_write_one_line_per_check(bench_dir, tiny_dir, tmp_path):
    import json

    from personadual.sft.train import main

    out = tmp_path / "sft"
    main(load_config(SFTRunConfig, None, sft_overrides(tiny_dir, bench_dir, out, max_steps=6, eval_data=bench_dir,
                                                      separation_steps=4, separation_limit=20, cross_mode_share=0.5)))
    rows = [json.loads(line) for line in (out / "separation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 6]  # every 4 steps, and after the last
    for r in rows:
        assert r["n"] == 20 and 0 <= r["decisive"] <= 20 and set(r["forced_acc"]) == {"general", "personalized"}
        assert set(r["answers_differ"]) <= {"none", "irrelevant", "misaligned", "helpful", "ambiguous", "personalized"}
    with pytest.raises(ConfigError, match="separation_steps needs eval_data"):
        load_config(SFTRunConfig, None, sft_overrides(tiny_dir, bench_dir, out, separation_steps=4))


def test_unverified_cross_mode_traces_define_every_mode_on_every_item_without_teaching_the_choice(bench_dir, tiny_dir):
    """cross_mode_unverified: the personalized mode following a misaligned persona and the persona-blind general
    mode on a personalized question are trained too, always after a given marker; only verified traces teach it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    items = read_items(bench_dir / "train.jsonl")
    exs = build_examples(items, "dual", tok, cross_mode_share=1.0, cross_mode_unverified=True)
    by_prompt = {}
    for ex in exs:
        by_prompt.setdefault(ex["prompt"], []).append(ex)
    mis = [it for it in items if it.condition == "misaligned"]
    assert mis and all(not it.trace_correct("personalized") for it in mis)
    for it in mis:  # both modes now, the wrong personalized one with its marker as context
        rows = by_prompt[modes_lib.render_prompt(tok, it.question, it.persona)]
        wrong = [e for e in rows if e["completion"].startswith("[Personalized_mode]")]
        assert len(wrong) == 1 and wrong[0].get("marker_in_loss") is False and it.traces["personalized"].reasoning in wrong[0]["completion"]
    trained_marker = [e for e in exs if e.get("marker_in_loss", True)]
    verified = {(modes_lib.render_prompt(tok, it.question, it.persona), m) for it in items for m in it.traces if it.trace_correct(m)}
    marker_of = {"[General_mode]": "general", "[Personalized_mode]": "personalized"}
    assert all((e["prompt"], marker_of[e["completion"].split("\n")[0]]) in verified for e in trained_marker)
    assert len(exs) == sum(len(it.traces) for it in items if it.preferred_mode in it.traces)


def test_without_the_mode_choice_every_item_trains_both_modes_each_with_its_marker(bench_dir, tiny_dir):
    """teach_mode_choice=False: both traces of every item, right or wrong, each marker in the loss, so each
    prompt trains the two markers equally often (even odds) whatever the item's preferred mode."""
    from collections import Counter

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    items = read_items(bench_dir / "train.jsonl")
    exs = build_examples(items, "dual", tok, teach_mode_choice=False)
    assert not any("marker_in_loss" in e for e in exs)
    per_prompt = Counter((e["prompt"], e["completion"].split("\n")[0]) for e in exs)
    prompts = {p for p, _ in per_prompt}
    assert all(per_prompt[(p, "[General_mode]")] == per_prompt[(p, "[Personalized_mode]")] > 0 for p in prompts)
    mis = next(it for it in items if it.condition == "misaligned")  # its wrong personalized trace is taught too
    assert (modes_lib.render_prompt(tok, mis.question, mis.persona), "[Personalized_mode]") in per_prompt
    taught = build_examples(items, "dual", tok)
    assert len(exs) > len(taught)  # the default teaches the preferred mode's marker only


def test_open_choice_conditions_train_both_verified_modes_with_their_markers_there_only(bench_dir, tiny_dir):
    """open_choice_conditions=[helpful]: a helpful item trains both its (right) traces, each marker in the loss, so
    SFT prefers neither mode there; every other condition's examples are exactly the taught mix's."""
    from collections import Counter

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    items = read_items(bench_dir / "train.jsonl")
    kw = dict(cross_mode_share=0.5, cross_mode_unverified=True, seed=0)
    taught, open_ = build_examples(items, "dual", tok, **kw), build_examples(items, "dual", tok, open_choice_conditions=["helpful"], **kw)
    helpful = {modes_lib.render_prompt(tok, it.question, it.persona) for it in items if it.condition == "helpful"}
    assert helpful
    markers = Counter((e["prompt"], e["completion"].split("\n")[0]) for e in open_ if e["prompt"] in helpful
                      and e.get("marker_in_loss", True))
    assert all(markers[(p, "[General_mode]")] == markers[(p, "[Personalized_mode]")] == 1 for p in helpful)
    rest = lambda exs: [e for e in exs if e["prompt"] not in helpful]  # noqa: E731
    assert rest(open_) == rest(taught)
    # a condition whose other trace is wrong (misaligned) stays taught: the wrong trace never trains its marker
    mis_open = build_examples(items, "dual", tok, open_choice_conditions=["misaligned"], **kw)
    assert [e for e in mis_open if e.get("marker_in_loss", True)] == [e for e in taught if e.get("marker_in_loss", True)]


def test_open_choice_conditions_must_be_persona_conditions():
    base = ["model=m", "data=d", "output_dir=o"]
    with pytest.raises(ConfigError, match="open_choice_conditions"):
        load_config(SFTRunConfig, None, base + ["open_choice_conditions=[helpfull]"])


def test_max_steps_by_mix_gives_the_named_mix_its_own_step_count():
    base = ["model=m", "data=d", "output_dir=o", "max_steps_by_mix={dual: 450}"]
    assert load_config(SFTRunConfig, None, base + ["mix=dual"]).max_steps == 450
    assert load_config(SFTRunConfig, None, base + ["mix=general_only"]).max_steps == -1  # TRL's default: by epochs
    with pytest.raises(ConfigError, match="max_steps_by_mix"):
        load_config(SFTRunConfig, None, base + ["max_steps_by_mix={duel: 450}"])


def test_max_steps_given_by_name_beats_the_recipes_per_mix_steps():
    """The tiny recipe gives the dual mix 450 steps; `max_steps=3` on the command line still means 3."""
    base = ["model=m", "data=d", "output_dir=o", "mix=dual"]
    assert load_config(SFTRunConfig, "recipes/tiny-cpu/sft.yaml", base).max_steps == 450
    assert load_config(SFTRunConfig, "recipes/tiny-cpu/sft.yaml", base + ["max_steps=3"]).max_steps == 3

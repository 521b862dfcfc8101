"""The genuine Qwen3 tokenizer (and a BOS-adding one) through the whole pipeline on CPU.

Random-init Qwen3 models with Qwen3's own tokenizer and chat template and its 151,936-row table
(`personadual model init`), trained for a few steps: what is checked is the plumbing a real model
meets and a tiny tokenizer hides, token for token, not what the model learns.
"""

import hashlib
import json
import re
import subprocess
import sys

import openai
import pytest
import torch
from safetensors.torch import load_file

from personadual import modes as modes_lib
from personadual.config import load_config
from personadual.data import read_items
from personadual.engine import Engine
from personadual.models.real_vocab import QWEN3_TABLE_ROWS, RealVocabConfig, init_model, qwen3_tokenizer_dir
from personadual.rl.config import RLRunConfig
from personadual.serve.process import ServerProcess
from personadual.sft.config import SFTRunConfig
from personadual.sft.mixes import build_examples
from personadual.tokenization import SETTINGS_FILE, example_ids, prompt_ids

from conftest import sft_overrides

QWEN3_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
NO_THINKING = {"enable_thinking": False}
THINKING = {"unset": None, "false": NO_THINKING}  # the two settings every pipeline check runs under


@pytest.fixture(scope="module")
def qwen3_tied(tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen3") / "model"
    init_model(out, RealVocabConfig())
    return out


@pytest.fixture(scope="module")
def qwen3_untied(tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen3u") / "model"
    init_model(out, RealVocabConfig(untied=True))
    return out


@pytest.fixture(scope="module")
def bos_model(bench_dir, tmp_path_factory):
    from personadual.models.tiny import TinyModelConfig, init_tiny

    out = tmp_path_factory.mktemp("bos")
    init_tiny(bench_dir, out, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                               intermediate_size=64, vocab_size=600, bos=True))
    return out


def _with_markers(model_dir):
    """(model, tokenizer) with the markers registered as SFT registers them."""
    from personadual.training import load_model_and_tokenizer, register_markers

    model, tok = load_model_and_tokenizer(str(model_dir))
    register_markers(model, tok, modes_lib.DEFAULT_MODES)
    return model, tok


# -- the tokenizer and the markers ------------------------------------------------------------------


def test_the_qwen3_tokenizer_is_the_genuine_one():
    from transformers import AutoTokenizer

    path = qwen3_tokenizer_dir()
    assert hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest() == QWEN3_SHA256
    tok = AutoTokenizer.from_pretrained(path)
    assert len(tok) == 151_643 + 26 and tok.bos_token is None
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<think>", "</think>"]) == [151644, 151645, 151667, 151668]
    msgs = [{"role": "user", "content": "hi"}]
    unset = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    off = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **NO_THINKING)
    assert unset.endswith("<|im_start|>assistant\n") and off == unset + "<think>\n\n</think>\n\n"


def test_markers_keep_qwen3s_own_special_tokens(qwen3_tied, tmp_path):
    from transformers import AutoTokenizer

    model, tok = _with_markers(qwen3_tied)
    own = [t for t in AutoTokenizer.from_pretrained(qwen3_tied).all_special_tokens]
    assert "<|im_start|>" in own
    tok.save_pretrained(tmp_path)
    for t in (tok, AutoTokenizer.from_pretrained(tmp_path)):
        assert set(own) <= set(t.all_special_tokens)  # none replaced by the markers
        ids = modes_lib.marker_token_ids(t)
        assert ids == [151669, 151670]  # inside the padded table: no resize
        text = "<|im_start|>assistant\n[General_mode]\nA <think>"
        enc = t.encode(text, add_special_tokens=False)
        assert enc[0] == 151644 and enc[3] == ids[0]  # <|im_start|> assistant \n [General_mode]
        assert t.decode(enc, skip_special_tokens=True) == "assistant\n\nA <think>"  # specials gone, <think> kept
    assert model.get_input_embeddings().num_embeddings == QWEN3_TABLE_ROWS


@pytest.mark.parametrize("init", ["words", "mean"])
@pytest.mark.parametrize("which", ["tied", "untied"])
def test_new_marker_rows_start_on_trained_rows_in_both_tables(which, init, qwen3_tied, qwen3_untied):
    """'words': each marker at its mode name's rows, so the two differ; 'mean': both at the mean row."""
    from transformers import AutoModelForCausalLM

    from personadual.training import load_model_and_tokenizer, register_markers

    path = qwen3_tied if which == "tied" else qwen3_untied
    before = AutoModelForCausalLM.from_pretrained(path)
    model, tok = load_model_and_tokenizer(str(path))
    register_markers(model, tok, modes_lib.DEFAULT_MODES, init=init)
    ids = modes_lib.marker_token_ids(tok)
    tables = [(model.get_input_embeddings().weight, before.get_input_embeddings().weight),
              (model.get_output_embeddings().weight, before.get_output_embeddings().weight)]
    assert (tables[0][0] is tables[1][0]) == (which == "tied")
    for now, old in tables:
        for i, name in zip(ids, modes_lib.DEFAULT_MODES.names):
            words = tok(" " + name, add_special_tokens=False).input_ids
            want = old[words].mean(dim=0) if init == "words" else old[:151_669].mean(dim=0)
            torch.testing.assert_close(now[i], want)
        assert torch.equal(now[ids[0]], now[ids[1]]) == (init == "mean")
        assert torch.equal(now[:151_669], old[:151_669]) and torch.equal(now[151_671:], old[151_671:])


def test_the_engine_stops_on_every_end_id_the_model_has(qwen3_tied):
    model, tok = _with_markers(qwen3_tied)
    assert Engine(model, tok).end_ids == [151645, 151643]  # <|im_end|> and <|endoftext|>, not one of them


# -- token-exact agreement: training, rollouts, eval and serving see the same ids --------------------


@pytest.mark.parametrize("case", ["qwen3/unset", "qwen3/false", "bos"])
def test_training_and_inference_see_the_same_token_ids(case, bench_dir, qwen3_tied, bos_model, tmp_path):
    from personadual.rl.train import build_trainer
    from personadual.serve.prompting import build_prompt
    from personadual.serve.schemas import Message

    path, kwargs = {"qwen3/unset": (qwen3_tied, None), "qwen3/false": (qwen3_tied, NO_THINKING),
                    "bos": (bos_model, None)}[case]
    model, tok = _with_markers(path)
    engine = Engine(model, tok, chat_template_kwargs=dict(kwargs or {}))
    marker = dict(zip(modes_lib.DEFAULT_MODES.names, engine.marker_ids))
    items = [it for it in read_items(bench_dir / "train.jsonl") if it.persona][:6]
    prefix = [tok.bos_token_id] if tok.bos_token_id is not None else []

    # SFT: prompt + completion starts with exactly the inference prompt and the forced marker
    examples = build_examples(items, "dual", tok, chat_template_kwargs=kwargs)
    for ex, row in zip(examples, example_ids(tok, examples)):
        mode = modes_lib.parse(ex["completion"]).mode
        served = engine.input_ids([ex["prompt"]], mode)[0]
        assert row["input_ids"][: len(served)] == served
        start = row["completion_mask"].index(1)
        assert row["input_ids"][start] == marker[mode] and sum(row["completion_mask"][:start]) == 0
        assert row["input_ids"][: len(prefix) + 1][: len(prefix)] == prefix and row["input_ids"][len(prefix)] != tok.bos_token_id
        if kwargs == NO_THINKING:
            assert tok.decode(row["input_ids"][start - 4 : start]) == "<think>\n\n</think>\n\n"

    # eval renders the same text; serving renders the same ids from chat messages
    prompts = [engine.render_prompt(it.question, it.persona) for it in items]
    assert prompts == [ex["prompt"] for ex in examples]
    for it, p in zip(items, prompts):
        msgs = [Message(role="system", content=it.persona), Message(role="user", content=it.question)]
        assert prompt_ids(tok, [build_prompt(tok, msgs, None, engine.chat_template_kwargs)]) == engine.prompt_ids([p])

    # RL: TRL's prompt tokenization goes through the same rule, and every forced rollout opens with its marker
    overrides = [f"model={path}", f"data={bench_dir}", f"output_dir={tmp_path}", "num_generations=2",
                 "per_device_train_batch_size=4", "max_completion_length=4", "beta=0.0", "max_steps=1", "eval_limit=0",
                 "limit=4", "threads=1", f"chat_template_kwargs={json.dumps(kwargs or {})}"]
    trainer = build_trainer(load_config(RLRunConfig, None, overrides), model=model, tok=tok)
    rollout_prompts = [trainer.train_dataset[i]["prompt"] for i in range(2) for _ in range(2)]
    assert trainer._tokenize_prompts(rollout_prompts)[0] == engine.prompt_ids(rollout_prompts)
    trainer.model.train()
    out = trainer._generate_and_score_completions([dict(trainer.train_dataset[i]) for i in range(2) for _ in range(2)])
    assert out["completion_ids"][:, 0].tolist() == [marker["general"], marker["personalized"]] * 2
    for row, mask, p in zip(out["prompt_ids"], out["prompt_mask"], rollout_prompts):
        assert row[mask.bool()].tolist() == engine.prompt_ids([p])[0]


def test_trls_own_text_tokenization_would_double_the_bos(bos_model):
    """Why the rule exists: the template writes BOS, and tokenizing its text with special tokens adds another."""
    _, tok = _with_markers(bos_model)
    text = modes_lib.render_prompt(tok, "2 + 2?", None)
    bos = tok.bos_token_id
    assert tok(text).input_ids[:2] == [bos, bos]
    assert prompt_ids(tok, [text])[0][:2] == [bos, tok.convert_tokens_to_ids("<|im_start|>")]


# -- the pipeline: SFT (full, LoRA), DualGRPO, eval, serve -------------------------------------------


def _sft(model, data, out, *extra):
    from personadual.sft.train import main

    return main(load_config(SFTRunConfig, None, sft_overrides(
        model, data, out, max_steps=2, per_device_train_batch_size=4, limit=24, learning_rate=1e-3, **dict(extra))))


@pytest.mark.slow
@pytest.mark.parametrize("thinking", list(THINKING))
def test_qwen3_pipeline_sft_rl_eval_serve(thinking, qwen3_tied, bench_dir, tmp_path):
    from personadual.rl.train import main as rl_main

    kwargs = THINKING[thinking]
    sft = _sft(qwen3_tied, bench_dir, tmp_path / "sft", *([("chat_template_kwargs", json.dumps(kwargs))] if kwargs else []))
    sft_dir = tmp_path / "sft" / "model"
    assert sft["steps"] == 2
    saved = json.loads((sft_dir / SETTINGS_FILE).read_text())["chat_template_kwargs"]
    assert saved == (kwargs or {})

    # RL inherits the SFT model's template settings unless told otherwise
    rl = rl_main(load_config(RLRunConfig, None, [
        f"model={sft_dir}", f"data={bench_dir}", f"output_dir={tmp_path / 'rl'}", "estimator.name=dual", "num_generations=2",
        "per_device_train_batch_size=4", "max_completion_length=6", "temperature=1.0", "beta=0.0", "max_steps=2",
        "save_steps=100", "eval_limit=0", "limit=8", "threads=1"]))
    rl_dir = tmp_path / "rl" / "model"
    assert rl["steps"] == 2 and json.loads((rl_dir / SETTINGS_FILE).read_text())["chat_template_kwargs"] == saved

    r = subprocess.run([sys.executable, "-m", "personadual.cli", "eval", "--model", str(rl_dir), "--data", str(bench_dir),
                        "--out", str(tmp_path / "eval"), "--limit", "6", "--max-new-tokens", "6", "--threads", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["chat_template_kwargs"] == saved and metrics["n"] == 6
    preds = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert {p["run"] for p in preds} == {"auto", "general", "personalized"}
    assert all(p["mode"] == p["requested_mode"] for p in preds if p["run"] != "auto")

    it = next(i for i in read_items(bench_dir / "val.jsonl") if i.persona)
    engine = Engine.load(str(rl_dir), device="cpu")
    expected = engine.generate([engine.render_prompt(it.question, it.persona)], "auto")[0]
    with ServerProcess(rl_dir, "--threads", "1") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0, timeout=120)
        resp = client.chat.completions.create(model="model", max_tokens=96, messages=[
            {"role": "system", "content": it.persona}, {"role": "user", "content": it.question}])
        meta = resp.model_extra["personadual"]
        assert meta["mode"] == expected.mode and meta["p_mode"] == {k: round(v, 6) for k, v in expected.p_mode.items()}
        assert resp.usage.prompt_tokens == len(engine.prompt_ids([engine.render_prompt(it.question, it.persona)])[0])
        # a request may change the template settings, as vLLM's server allows
        other = {"enable_thinking": True} if kwargs else NO_THINKING
        again = client.chat.completions.create(model="model", max_tokens=8, extra_body={"chat_template_kwargs": other},
                                               messages=[{"role": "user", "content": it.question}])
        rendered = engine.tokenizer.apply_chat_template([{"role": "user", "content": it.question}], tokenize=False,
                                                        add_generation_prompt=True, **other)
        assert again.usage.prompt_tokens == len(prompt_ids(engine.tokenizer, [rendered])[0])


@pytest.mark.parametrize("which", ["tied", "untied"])
def test_lora_trains_only_the_marker_rows_of_the_real_table(which, qwen3_tied, qwen3_untied, bench_dir, tmp_path):
    """``lora.train_embeddings=markers``: PEFT's trainable_token_indices on the markers' rows, read by TRL's
    fused LM head; the merged model differs from the start in those rows only. The full tables
    (``full``) would train 151,936 rows per table instead."""
    from peft import get_peft_model

    from personadual.sft.train import main
    from personadual.training import load_model_and_tokenizer, register_markers

    path = qwen3_tied if which == "tied" else qwen3_untied
    lora = ["lora.r=4", "lora.dropout=0.0"]
    result = main(load_config(SFTRunConfig, None, sft_overrides(path, bench_dir, tmp_path, max_steps=2, limit=16,
                                                                 per_device_train_batch_size=4, learning_rate=1e-2)
                              + lora + ["lora.train_embeddings=markers"]))
    start, _ = _with_markers(path)  # the weights training starts from: marker rows at their words' rows
    before = {k: v.detach() for k, v in start.state_dict().items()}
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert set(after) <= set(before) and "model.embed_tokens.weight" in after  # merged: a plain model
    ids = [151669, 151670]
    tables = ["model.embed_tokens.weight"] + (["lm_head.weight"] if which == "untied" else [])
    for name in tables:
        assert not torch.equal(after[name][ids], before[name][ids]), name  # the markers' rows trained
        rest = torch.ones(before[name].shape[0], dtype=torch.bool)
        rest[ids] = False
        assert torch.equal(after[name][rest], before[name][rest]), name  # and nothing else in the table

    model, tok = load_model_and_tokenizer(str(path))
    full_cfg = load_config(SFTRunConfig, None, ["model=m", "data=d", "output_dir=o", *lora, "lora.train_embeddings=full"])
    full = get_peft_model(model, full_cfg.lora.to_peft(model, register_markers(model, tok, modes_lib.DEFAULT_MODES)))
    n_full = sum(p.numel() for p in full.parameters() if p.requires_grad)
    n_lora = sum(p.numel() for n, p in full.named_parameters() if p.requires_grad and "lora_" in n)
    hidden = 64
    assert result["trainable_params"] == n_lora + len(ids) * hidden * len(tables)
    assert n_full >= n_lora + QWEN3_TABLE_ROWS * hidden * len(tables)
    print(f"trainable parameters ({which}): markers {result['trainable_params']:,}, full tables {n_full:,}")


# -- memory and structure ------------------------------------------------------------------------------


def test_the_mode_pass_keeps_only_the_last_positions_logits(qwen3_tied):
    """p(mode | x) needs one position: at V = 151,936 the full B x T x V logits would be gigabytes."""
    model, tok = _with_markers(qwen3_tied)
    engine = Engine(model, tok)
    shapes = []
    hook = model.register_forward_hook(lambda m, args, kwargs, out: shapes.append(tuple(out.logits.shape)),
                                       with_kwargs=True)
    try:
        engine.mode_stats([engine.render_prompt("word " * 300, None)] * 3)
    finally:
        hook.remove()
    assert shapes == [(3, 1, QWEN3_TABLE_ROWS)]


def test_one_engine_package_and_the_trainer_does_not_import_it():
    from pathlib import Path

    import personadual

    code = "import sys, personadual.rl.trainer; print(sorted(m for m in sys.modules if m.startswith('personadual.engine')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    root = Path(personadual.__file__).parent
    built = re.compile(r"(?<!class )VLLMEngine\(")
    builders = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if built.search(p.read_text())]
    assert builders == ["engine/__init__.py"]  # the backend is chosen in one place: load_engine

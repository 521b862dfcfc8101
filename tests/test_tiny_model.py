import json
import subprocess
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer

from personadual import modes
from personadual.data import read_items


def test_init_tiny_cli_writes_a_loadable_model(bench_dir, tmp_path):
    out = tmp_path / "m"
    r = subprocess.run([sys.executable, "-m", "personadual.cli", "model", "init-tiny", "--data", str(bench_dir),
                        "--out", str(out), "hidden_size=32", "num_layers=1", "intermediate_size=64", "vocab_size=500"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert set(info["markers"]) == {"general", "personalized"}
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == info["vocab"] and model.num_parameters() == info["params"]


def test_markers_are_single_tokens_and_ids_contiguous(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    ids = modes.marker_token_ids(tok)
    assert len(set(ids)) == 2
    assert sorted(tok.get_vocab().values()) == list(range(len(tok)))


def test_render_tokenize_decode_parse_round_trip(bench_dir, tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    for it in read_items(bench_dir / "test.jsonl")[:50]:
        for mode, tr in it.traces.items():
            prompt = modes.render_prompt(tok, it.question, it.persona)
            response = modes.format_response(mode, tr.reasoning, tr.answer)
            ids = tok(prompt + response + tok.eos_token, add_special_tokens=False).input_ids
            text = tok.decode(ids, skip_special_tokens=False)
            assert text == prompt + response + tok.eos_token  # byte-level BPE is lossless
            completion = text[len(prompt):]
            p = modes.parse(completion)
            assert p.well_formed, p.reason
            assert (p.mode, p.answer) == (mode, tr.answer)


def test_forward_pass_runs_on_chat_prompt(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    enc = tok([modes.render_prompt(tok, "who ?", "a chef")], return_tensors="pt", add_special_tokens=False)
    assert model(**enc).logits.shape[-1] == len(tok)

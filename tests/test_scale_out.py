"""Scale-out: every recipe validates; SFT and DualGRPO run under `accelerate launch` with 2 CPU
processes (gloo); advantages computed by 2 processes equal those computed by 1 for the same rollouts."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from personadual.config import load_config
from personadual.data.personabench import BenchConfig
from personadual.rl.config import RLRunConfig
from personadual.sft.config import SFTRunConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
ACCEL = RECIPES / "accelerate"
RUN_CONFIGS = {"sft.yaml": SFTRunConfig, "pretrain.yaml": SFTRunConfig, "rl.yaml": RLRunConfig,
               "data.yaml": BenchConfig}  # data.yaml: PersonaBench's knobs for a demo recipe folder
REQUIRED = ("model", "data", "output_dir")  # run recipes may leave these to the command line

run_recipes = sorted(p for p in RECIPES.rglob("*.yaml") if ACCEL not in p.parents and p.parent.name != "data")
accel_configs = sorted(ACCEL.glob("*.yaml"))


# -- (a) recipes ---------------------------------------------------------------------------------------


def load_recipe(cls, path, extra=()):
    """A recipe as its stage loads it. TRL's config builds DeepSpeed's at once, which needs the GPU-only
    deepspeed package: without it, the recipe loads with deepspeed=null and its JSON is checked here."""
    import importlib.util

    raw = yaml.safe_load(path.read_text()) or {}
    ds = raw.get("deepspeed")
    without = ds and importlib.util.find_spec("deepspeed") is None
    cfg = load_config(cls, path, [*extra, *(["deepspeed=null"] if without else [])])
    if ds:
        assert (ROOT / ds).is_file(), f"{path}: deepspeed file {ds} does not exist (paths are from the repo root)"
        json.loads((ROOT / ds).read_text())
        cfg.deepspeed_file = ds
    return cfg


@pytest.mark.parametrize("path", run_recipes, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_loads_into_its_config(path):
    stage = path.stem.split("-")[0] + ".yaml"  # sft-cloze.yaml is an sft recipe
    assert stage in RUN_CONFIGS, f"{path}: no config class for a recipe named {path.name}"
    raw = yaml.safe_load(path.read_text()) or {}
    missing = [] if path.name == "data.yaml" else [f"{k}=placeholder" for k in REQUIRED if k not in raw]
    load_recipe(RUN_CONFIGS[stage], path, missing)  # unknown keys and bad values raise ConfigError


def test_paper_recipes_pin_the_paper_settings():
    sft = load_recipe(SFTRunConfig, RECIPES / "qwen3-8b/sft.yaml")
    assert (sft.model, sft.learning_rate, sft.num_train_epochs, sft.max_length, sft.bf16, sft.mix, sft.lora) == \
        ("Qwen/Qwen3-8B", 1e-5, 1.0, 4096, True, "dual", None)
    assert json.loads((ROOT / sft.deepspeed_file).read_text())["zero_optimization"]["stage"] == 3
    rl = load_recipe(RLRunConfig, RECIPES / "qwen3-8b/rl.yaml")
    assert (rl.estimator.name, rl.learning_rate, rl.num_generations, rl.beta, rl.temperature, rl.use_vllm, rl.vllm_mode) == \
        ("dual", 1e-6, 8, 0.04, 0.6, True, "colocate")
    assert rl.rewards == {"accuracy": 0.9, "format": 0.1} and rl.reward_weights == [0.9, 0.1]
    assert (rl.lr_scheduler_type, rl.warmup_steps) == ("constant_with_warmup", 0.1)  # 10% warm-up
    gpus = yaml.safe_load((ACCEL / "zero3.yaml").read_text())["num_processes"]
    rollouts = gpus * rl.per_device_train_batch_size * rl.gradient_accumulation_steps
    assert rollouts // rl.num_generations == 64  # 64 prompts per optimizer step (verl's train_batch_size)
    for size in ("0.6b", "1.7b"):
        for stage, cls in (("sft", SFTRunConfig), ("rl", RLRunConfig)):
            cfg = load_recipe(cls, RECIPES / f"qwen3-{size}/{stage}.yaml")
            assert cfg.lora is not None and cfg.deepspeed is None and cfg.bf16
            assert cfg.lora.train_embeddings == "markers"
    for size in ("0.6b", "1.7b", "8b"):  # the paper runs Qwen3 non-thinking, in both stages
        for stage, cls in (("sft", SFTRunConfig), ("rl", RLRunConfig)):
            assert load_recipe(cls, RECIPES / f"qwen3-{size}/{stage}.yaml").chat_template_kwargs == {"enable_thinking": False}


@pytest.mark.parametrize("path", accel_configs, ids=lambda p: p.name)
def test_accelerate_config_parses(path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    raw = yaml.safe_load(path.read_text())
    for key in ("compute_environment", "distributed_type", "num_machines", "num_processes"):
        assert key in raw, f"{path.name}: no {key}"
    cfg = load_config_from_file(str(path))  # accelerate's own loader: unknown top-level keys raise
    # every launcher option we set must be one `accelerate launch` knows (it ignores unknown ones silently)
    known = {a.dest for a in launch_command_parser()._actions}
    for section in ("fsdp_config", "deepspeed_config"):
        for key in raw.get(section, {}):
            assert key in known, f"{path.name}: {section}.{key} is not an accelerate launch option"
    kind = path.stem
    if kind.startswith("zero"):
        assert raw["distributed_type"] == "DEEPSPEED"
        ds_file = ROOT / raw["deepspeed_config"]["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        assert ds["zero_optimization"]["stage"] == int(kind[-1])
        assert ds["bf16"]["enabled"] == "auto" and ds["train_micro_batch_size_per_gpu"] == "auto"  # from the recipe
        assert "mixed_precision" not in raw  # accelerate refuses it next to a deepspeed_config_file
    elif kind == "fsdp":
        assert raw["distributed_type"] == "FSDP" and raw["fsdp_config"]["fsdp_version"] == 2
        assert not raw["fsdp_config"]["fsdp_activation_checkpointing"]  # the recipes' gradient_checkpointing does it
    elif kind in ("ddp", "cpu2"):
        assert raw["distributed_type"] == "MULTI_GPU"  # torchrun launcher; cpu2 falls back to gloo on CPU
    else:
        pytest.fail(f"unexpected accelerate config {path.name}")
    assert cfg.num_processes == (2 if kind == "cpu2" else 8)


def test_every_deepspeed_json_parses():
    files = sorted(ACCEL.glob("*.json"))
    assert {f.name for f in files} >= {"zero2.json", "zero3.json"}
    for f in files:
        assert "zero_optimization" in json.loads(f.read_text())


def test_data_recipe_runs_on_local_source_files(tmp_path):
    """recipes/data/paper_mix.sh on the fixture copies of the sources, up to the teacher step."""
    from personadual.data.schema import read_items

    fixtures = ROOT / "tests/fixtures/sources"
    env = {**os.environ, "SRC": str(fixtures), "OUT": str(tmp_path), "N_MED": "1", "N_FLAN": "1", "N_ALIGNX": "1",
           "N_VAL": "1", "N_RL": "1", "PERSONADUAL": f"{sys.executable} -m personadual.cli", "PYTHON": sys.executable,
           "TEACH_ARGS": "--endpoint http://127.0.0.1:9/v1 --model none"}
    env.pop("DRY_RUN", None)
    script = RECIPES / "data/paper_mix.sh"
    r = subprocess.run(["bash", str(script)], env={**env, "DRY_RUN": "1"}, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "data load ultramedical" in r.stdout and "data teach" in r.stdout and not (tmp_path / "raw").exists()
    r = subprocess.run(["bash", str(script)], env={**env, "SKIP_TEACH": "1"}, capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "stopping after step 3" in r.stdout
    pool = read_items(tmp_path / "paper_pool/train.jsonl")
    assert {it.source for it in pool} == {"ultramedical", "flan", "alignx"}
    for it in pool:  # objective items: a PersonaHub persona, or an aligned (helpful) persona in the marked slot
        assert it.kind == "personalized" or (it.condition == "irrelevant" and it.persona) or \
            (it.condition == "helpful" and it.persona and it.persona_pull == it.gold
             and it.meta.get("persona_slot") == "aligned")
    assert any(it.condition == "helpful" for it in pool)  # the builder filled the aligned slots
    rl_ids = {it.id for it in read_items(tmp_path / "paper_rl/train.jsonl")}
    assert rl_ids and not rl_ids & {it.id for it in pool}  # RL items are disjoint from SFT items


# -- (b) two processes on CPU ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(*args, timeout=240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCEL / "cpu2.yaml"),
           "--num_processes", "2", "--main_process_port", str(_free_port()), *map(str, args)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-5000:])
    return r


def _results(stdout: str) -> list[dict]:
    """The JSON results the CLI printed (one per process that prints)."""
    dec, out, i = json.JSONDecoder(), [], 0
    while (i := stdout.find("{\n", i)) != -1:
        obj, end = dec.raw_decode(stdout, i)
        out.append(obj)
        i = end
    return out


def _assert_two_processes(checkpoint: Path):
    """HF's Trainer saves one RNG state per process when there are several."""
    assert sorted(p.name for p in checkpoint.glob("rng_state*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]


@pytest.mark.slow
def test_sft_runs_under_accelerate_launch_with_two_processes(bench_dir, tiny_dir, tmp_path):
    from safetensors.torch import load_file

    from personadual.training import COMPLETE

    r = _launch("-m", "personadual.cli", "sft", "--config", RECIPES / "tiny-cpu/sft.yaml",
                f"model={tiny_dir}", f"data={bench_dir}", f"output_dir={tmp_path}", "max_steps=3",
                "per_device_train_batch_size=8", "max_length=256", "save_steps=1000", "logging_steps=1",
                "eval_limit=0", "threads=1", "warmup_steps=0.0")
    assert {res["steps"] for res in _results(r.stdout)} == {3}
    _assert_two_processes(tmp_path / "checkpoint-3")
    assert (tmp_path / "model" / COMPLETE).exists()
    weights = load_file(tmp_path / "model" / "model.safetensors")
    before = load_file(tiny_dir / "model.safetensors")
    assert any(not (weights[k] == before[k]).all() for k in before)


@pytest.mark.slow
def test_dualgrpo_runs_under_accelerate_launch_with_two_processes(bench_dir, tiny_dir, tmp_path):
    """G=4, 2 rollouts per device per micro-batch: every prompt's group is spread over both processes."""
    from personadual.training import COMPLETE

    r = _launch("-m", "personadual.cli", "rl", "--config", RECIPES / "tiny-cpu/rl.yaml",
                f"model={tiny_dir}", f"data={bench_dir}", f"output_dir={tmp_path}", "estimator.name=dual",
                "force_modes=true", "num_generations=4", "per_device_train_batch_size=2",
                "gradient_accumulation_steps=3", "max_completion_length=12", "max_steps=2", "save_steps=1000",
                "logging_steps=1", "eval_limit=0", "threads=1", "limit=32",
                "prompt_split=train")  # the small test benchmark has no rl split
    assert {(res["steps"], res["estimator"]) for res in _results(r.stdout)} == {(2, "dual")}
    _assert_two_processes(tmp_path / "checkpoint-2")
    assert (tmp_path / "model" / COMPLETE).exists()
    assert "dual/p_personalized" in r.stdout + r.stderr  # the DualGRPO metrics were logged


@pytest.fixture(scope="module")
def dist_advantages():
    """tests/dist_advantages.py as a module (it is also the script `accelerate launch` runs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dist_advantages", Path(__file__).with_name("dist_advantages.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_advantages_across_two_processes_equal_one_process(bench_dir, tiny_dir, tmp_path, dist_advantages):
    """Same rollouts, same rewards: 2 processes == 1 process, row for row. 3 prompts x G=4 = 12 rows, 6 per
    process, so prompt 1's group is cut in half across the processes."""
    import torch

    n_prompts, G = 3, 4
    _launch(ROOT / "tests/dist_advantages.py", "--model", tiny_dir, "--data", bench_dir, "--out", tmp_path / "two.json",
            "--workdir", tmp_path / "w2", "--n-prompts", n_prompts, "--G", G)
    two = json.loads((tmp_path / "two.json").read_text())
    one = dist_advantages.run(str(tiny_dir), str(bench_dir), None, str(tmp_path / "w1"), n_prompts=n_prompts, G=G)
    assert (one["world"], two["world"]) == (1, 2)
    assert [r["row"] for r in two["rows"]] == [r["row"] for r in one["rows"]] == list(range(n_prompts * G))
    assert two["rewards"] == one["rewards"]
    for a, b in zip(one["rows"], two["rows"]):
        assert (a["completion_ids"], a["mode"]) == (b["completion_ids"], b["mode"])
        torch.testing.assert_close(torch.tensor(b["advantages"]), torch.tensor(a["advantages"]), rtol=1e-5, atol=1e-6)
    # a real check, not zeros against zeros: both the marker (selection) and the reasoning advantages vary
    marker = [r["advantages"][0] for r in one["rows"]]
    reasoning = [r["advantages"][1] for r in one["rows"]]
    assert len({round(x, 6) for x in marker}) > 1 and len({round(x, 6) for x in reasoning}) > 1
    assert [r["mode"] for r in one["rows"]][:G] == ["general", "general", "personalized", "personalized"]

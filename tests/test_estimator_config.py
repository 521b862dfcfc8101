"""The estimator registry and the recipe's estimator block: registration, one validation, the flat form of
personadual <= 0.1 still loading (with one note), dotted overrides, and `personadual keys rl`."""

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from personadual.config import ConfigError, load_config, plain, save_config
from personadual.rl.advantages import DualConfig, DualPaperConfig, GrpoConfig, dual
from personadual.rl.config import RLRunConfig
from personadual.rl.estimator_registry import ESTIMATORS, EstimatorConfig, register_estimator, unregister_estimator

ROOT = Path(__file__).resolve().parents[1]
BASE = ["model=m", "data=d", "output_dir=o"]
REST = "model: m\ndata: d\noutput_dir: o\nforce_modes: true\nscale_rewards: none\n"
FLAT = "estimator: dual\nalpha: 8.0\nweight_reasoning: true\nmarker_mass_coef: 0.0\n" + REST
NESTED = "estimator:\n  name: dual\n  alpha: 8.0\n  weight_reasoning: true\n  marker_mass_coef: 0.0\n" + REST


def load(path=None, overrides=()):
    """The config, and the estimator notes its loading gave (TRL's own deprecation warnings left aside)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(RLRunConfig, path, [*BASE, *overrides])
    return cfg, [str(w.message) for w in caught if w.category is FutureWarning and "estimator" in str(w.message)]


def recipe(tmp_path, text, name="rl.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_each_estimator_has_its_own_config_holding_only_what_it_reads():
    assert {n: e.config for n, e in ESTIMATORS.items()} == {"grpo": GrpoConfig, "dual_paper": DualPaperConfig,
                                                            "dual": DualConfig}
    assert ESTIMATORS["dual"].fn is dual and DualConfig().name == "dual" and GrpoConfig().name == "grpo"
    assert not hasattr(GrpoConfig(), "alpha") and not hasattr(DualPaperConfig(), "alpha")
    assert not hasattr(DualConfig(), "prefix_weight") and hasattr(DualPaperConfig(), "prefix_weight")
    assert GrpoConfig.PER_SEQUENCE and not DualConfig.PER_SEQUENCE and not DualPaperConfig.PER_SEQUENCE


def test_a_duplicate_registration_is_refused():
    @dataclass(frozen=True)
    class Another(EstimatorConfig):
        pass

    def fn(*args):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="advantage estimator 'dual' is already registered .*advantages.dual"):
        register_estimator("dual", Another)(fn)
    with pytest.raises(ValueError, match="config class DualConfig already configures estimator 'dual'"):
        register_estimator("dual_again", DualConfig)(fn)
    with pytest.raises(TypeError, match="subclassing EstimatorConfig"):
        register_estimator("plain_dict", dict)
    assert ESTIMATORS["dual"].fn is dual and "dual_again" not in ESTIMATORS  # nothing half-registered
    with pytest.raises(KeyError, match="unknown advantage estimator 'ppo'"):
        unregister_estimator("ppo")


def test_the_block_is_the_registered_config_and_its_keys_are_checked_once(tmp_path):
    cfg, notes = load(recipe(tmp_path, NESTED))
    assert cfg.estimator == DualConfig(scale_rewards="none", alpha=8.0, weight_reasoning=True) and notes == []
    assert cfg.estimator.scale_rewards == cfg.scale_rewards == "none"  # TRL's key, bound in: one value, TRL's
    bad = {"estimator:\n  name: grpo\n  alpha: 8.0\n": r"estimator 'grpo' does not read \['alpha'\]",
           "estimator:\n  name: dual\n  alpah: 8.0\n": r"does not read \['alpah'\]; alpah: did you mean \['alpha'\]",
           "estimator:\n  name: dual\n  scale_rewards: none\n": "scale_rewards is TRL's GRPOConfig key: set it at the recipe's top",
           "estimator:\n  name: ppo\n": r"unknown estimator 'ppo'; known: \['dual', 'dual_paper', 'grpo'\]",
           "estimator:\n  name: dual\n  alpha: -1\n": "alpha, marker_mass_coef and reasoning_coef must be >= 0",
           "estimator:\n  name: dual_paper\n  eps: 0\n": "eps must be > 0",
           "estimator:\n  name: dual\n  alpha: lots\n": "alpha: expected a number"}
    for i, (block, message) in enumerate(bad.items()):
        with pytest.raises(ConfigError, match=message):
            load(recipe(tmp_path, block, f"bad{i}.yaml"))


def test_dotted_overrides_reach_into_the_block(tmp_path):
    path = recipe(tmp_path, NESTED)
    cfg, _ = load(path, ["estimator.alpha=16", "estimator.split_modes=false"])
    assert cfg.estimator == DualConfig(scale_rewards="none", alpha=16.0, weight_reasoning=True, split_modes=False)
    # another estimator by name (the demo trains each from one recipe): the recipe's settings for dual are left out
    cfg, notes = load(path, ["estimator.name=dual_paper", "estimator.prefix_weight=3"])
    assert cfg.estimator == DualPaperConfig(scale_rewards="none", prefix_weight=3.0) and notes == []
    with pytest.raises(ConfigError, match=r"estimator 'grpo' does not read \['alpha'\]"):  # asked for by name: an error
        load(path, ["estimator.name=grpo", "estimator.alpha=2"])
    assert load(None, ["estimator.alpha=2"])[0].estimator == DualConfig(alpha=2.0)  # no recipe: the default estimator


def test_the_flat_form_loads_to_the_same_config_with_one_note(tmp_path):
    nested, _ = load(recipe(tmp_path, NESTED))
    flat, notes = load(recipe(tmp_path, FLAT, "flat.yaml"))
    assert plain(flat) == plain(nested) and flat.estimator == nested.estimator
    assert len(notes) == 1 and ("flat.yaml: write `estimator: {name: dual, alpha: 8.0, weight_reasoning: true, "
                                "marker_mass_coef: 0.0}` instead of the top-level keys") in notes[0]
    # overrides in the flat form: the same as dotted ones, and one note for the recipe's and the overrides' keys
    by_name, _ = load(recipe(tmp_path, NESTED), ["estimator.name=grpo"])
    old, notes = load(recipe(tmp_path, FLAT, "flat.yaml"), ["estimator=grpo", "alpha=16"])
    assert old.estimator == by_name.estimator == GrpoConfig(scale_rewards="none") and len(notes) == 1
    assert "overrides: write estimator.name=grpo instead of estimator=grpo alpha=16 (alpha left out: estimator " \
           "'grpo' does not read them)" in notes[0]
    assert load(None, ["alpha=8", "weight_reasoning=true"])[0].estimator == load(
        None, ["estimator.alpha=8", "estimator.weight_reasoning=true"])[0].estimator == DualConfig(alpha=8.0,
                                                                                                   weight_reasoning=True)
    with pytest.raises(ConfigError, match=r"\['alpha'\] given twice"):
        load(recipe(tmp_path, NESTED + "alpha: 2.0\n", "twice.yaml"))


def test_a_run_saved_in_the_flat_form_reloads(tmp_path):
    """rl-compare reruns a finished run's saved config.yaml: a run saved before the block still loads."""
    old = {"model": "m", "data": "d", "output_dir": "o", "estimator": "grpo", "alpha": 8.0, "prefix_weight": 2.0,
           "weight_reasoning": True, "marker_mass_coef": 0.0, "reasoning_coef": 1.0}
    cfg, notes = load(recipe(tmp_path, yaml.safe_dump(old), "config.yaml"), ["seed=1"])
    assert cfg.estimator == GrpoConfig() and len(notes) == 1
    save_config(cfg, tmp_path / "again.yaml")
    assert yaml.safe_load((tmp_path / "again.yaml").read_text())["estimator"] == {"name": "grpo", "eps": 1e-4}
    assert load(tmp_path / "again.yaml") == (cfg, [])


def test_every_rl_recipe_is_in_the_nested_form():
    paths = sorted(ROOT.glob("recipes/*/rl*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        cfg, notes = load(path, ["deepspeed=null", "bf16=false", "use_vllm=false"])
        assert notes == [] and isinstance(cfg.estimator, EstimatorConfig), path


def test_keys_lists_the_estimator_block():
    from typer.testing import CliRunner

    from personadual.cli import app

    r = CliRunner().invoke(app, ["keys", "rl", "estimator."])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].startswith("estimator.alpha = 1.0  # dual: weight of the marker")
    assert "estimator.name = 'dual'  # the advantage estimator: dual, dual_paper, grpo;" in r.output
    assert "estimator.prefix_weight = 2.0  # dual_paper: " in r.output
    assert "estimator.eps = 0.0001  # dual, dual_paper, grpo: " in r.output
    assert "scale_rewards" not in r.output  # TRL's key: listed once, at the top level
    assert not any(line.startswith(("alpha =", "weight_reasoning =")) for line in
                   CliRunner().invoke(app, ["keys", "rl"]).output.splitlines())

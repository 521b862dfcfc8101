"""Fails loudly when a TRL upgrade moves a hook DualGRPOTrainer overrides (private methods
change signature between releases). Update personadual/rl/trainer.py, then these pins."""

import inspect

import trl
from trl import GRPOTrainer

PINNED = "1.16.0"
HOOKS = {
    "_generate_single_turn": ["self", "prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images"],
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_generate_and_score_completions": ["self", "inputs"],
    "_tokenize_prompts": ["self", "prompts"],
}


def test_trl_version_is_the_pinned_one():
    assert trl.__version__ == PINNED, f"DualGRPOTrainer was written against trl=={PINNED}"


def test_overridden_hooks_keep_their_signatures():
    for name, params in HOOKS.items():
        assert list(inspect.signature(getattr(GRPOTrainer, name)).parameters) == params, name


def test_generation_and_advantage_code_paths_we_rely_on_exist():
    src = inspect.getsource(GRPOTrainer._generate)
    assert "self._generate_single_turn(" in src and "skip_special_tokens=True" in src
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._calculate_rewards(" in src and '"advantages"' in src
    assert "advantages.dim() == 1" in inspect.getsource(GRPOTrainer._compute_loss)  # per-token advantages accepted
    # prompts are tokenized through the hook we override (so they get personadual's BOS rule)
    assert "self._tokenize_prompts(" in inspect.getsource(GRPOTrainer._generate)

"""The advantage-estimator registry: each estimator is a pure function registered together with its own
config class (as verl's ``core_algos`` registers its estimators, plus the config), so a recipe's
``estimator:`` block names one estimator and holds exactly the settings that function reads::

    @register_estimator("dual", DualConfig)
    def dual(rewards, group_ids, mode_ids, n_modes, mode_probs, cfg: DualConfig) -> SeqAdvantages: ...

Why a class per estimator: a setting the chosen estimator does not read is refused where it is
written (``estimator 'grpo' does not read alpha``) instead of being carried along and ignored, and
each class checks its own ranges in ``__post_init__``, once.

``scale_rewards`` is the one setting an estimator reads that it does not own: it is TRL's GRPOConfig
key, which TRL reads too. It lives in `EstimatorConfig` (the functions read ``cfg.scale_rewards``)
but is never a key of the block; the RL config and the trainer bind TRL's value in (`BOUND_KEYS`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

from ..config import ConfigError, from_dict, help_field

# Keys an estimator reads that TRL's GRPOConfig owns: set at the recipe's top level, bound into the config.
BOUND_KEYS = ("scale_rewards",)


@dataclass(frozen=True)
class EstimatorConfig:
    """What every estimator reads. Give each estimator a subclass with the fields it adds, and register the pair."""

    PER_SEQUENCE: ClassVar[bool] = False  # True: one advantage per rollout (marker = reasoning), as plain GRPO

    scale_rewards: str = help_field("TRL's scale_rewards, bound from the recipe's top-level key: 'group' divides by "
                                    "the reward std (GRPO), 'none' does not (Dr. GRPO)", "group")
    eps: float = help_field("added to the reward std before dividing, as TRL does", 1e-4)

    def __post_init__(self):
        if self.scale_rewards not in ("group", "none"):
            raise ValueError(f"scale_rewards: expected 'group' or 'none', got {self.scale_rewards!r}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")

    @property
    def name(self) -> str:
        """The name this config's class is registered under."""
        return name_of(type(self))

    def needs_forced_modes(self) -> str:
        """Why these settings need forced rollouts (force_modes: true), or '' when they do not."""
        return ""

    @classmethod
    def from_mapping(cls, block: Any, where: str) -> EstimatorConfig:
        """A recipe's block -> the named estimator's config (`personadual.config.from_dict` calls this)."""
        return config_from_block(block, where)

    def to_mapping(self) -> dict:
        """The recipe block that builds this config again (what a saved config holds)."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                      if f.name not in BOUND_KEYS}}

    @classmethod
    def recipe_keys(cls, default: EstimatorConfig) -> list[tuple[str, Any, str]]:
        """(key, default, help) of every key a block can hold, each help naming the estimators that read it."""
        return block_keys(default)


Estimator = Callable[..., Any]  # (rewards, group_ids, mode_ids, n_modes, mode_probs, cfg) -> SeqAdvantages


class RegisteredEstimator(NamedTuple):
    fn: Estimator
    config: type[EstimatorConfig]


ESTIMATORS: dict[str, RegisteredEstimator] = {}


def register_estimator(name: str, config: type[EstimatorConfig]):
    """Decorator: register ``fn`` under ``name`` with its config class. A name, or a config class, is taken once."""
    if not (isinstance(config, type) and issubclass(config, EstimatorConfig) and dataclasses.is_dataclass(config)):
        raise TypeError(f"estimator {name!r}: its config must be a dataclass subclassing EstimatorConfig, got {config!r}")

    def deco(fn: Estimator) -> Estimator:
        if name in ESTIMATORS:
            taken = ESTIMATORS[name].fn
            raise ValueError(f"advantage estimator {name!r} is already registered (by {taken.__module__}."
                             f"{taken.__qualname__}); choose another name, or unregister_estimator({name!r}) first")
        owner = [n for n, e in ESTIMATORS.items() if e.config is config]
        if owner:
            raise ValueError(f"estimator {name!r}: config class {config.__name__} already configures estimator "
                             f"{owner[0]!r}; give each estimator a class of its own (a subclass will do)")
        ESTIMATORS[name] = RegisteredEstimator(fn, config)
        return fn

    return deco


def unregister_estimator(name: str) -> None:
    """Remove ``name`` from the registry (a plugin or a test that registered a throwaway estimator)."""
    if name not in ESTIMATORS:
        raise KeyError(f"unknown advantage estimator {name!r}; known: {sorted(ESTIMATORS)}")
    del ESTIMATORS[name]


def get_estimator(name: str) -> Estimator:
    """The estimator function registered under ``name``."""
    if name not in ESTIMATORS:
        raise KeyError(f"unknown advantage estimator {name!r}; known: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name].fn


def name_of(config: type[EstimatorConfig]) -> str:
    """The name ``config`` is registered under (each class configures one estimator)."""
    for name, entry in ESTIMATORS.items():
        if entry.config is config:
            return name
    raise KeyError(f"{config.__name__} configures no registered estimator; known: {sorted(ESTIMATORS)}")


def config_from_block(block: Any, where: str) -> EstimatorConfig:
    """``{name: dual, alpha: 8}`` -> ``DualConfig(alpha=8.0)``. A key the named estimator does not read is an
    error naming the key and the estimator; numbers are coerced and ranges checked as for any recipe key."""
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a block (name: one of {sorted(ESTIMATORS)}, then its settings), "
                          f"got {block!r}")
    if "name" not in block:
        raise ConfigError(f"{where}: the block needs a name: one of {sorted(ESTIMATORS)}")
    name, settings = block["name"], {k: v for k, v in block.items() if k != "name"}
    if name not in ESTIMATORS:
        raise ConfigError(f"{where}: unknown estimator {name!r}; known: {sorted(ESTIMATORS)}")
    bound = [k for k in BOUND_KEYS if k in settings]
    if bound:
        raise ConfigError(f"{where}: {bound[0]} is TRL's GRPOConfig key: set it at the recipe's top level "
                          "(the estimator gets TRL's value)")
    keys = [f.name for f in dataclasses.fields(ESTIMATORS[name].config) if f.name not in BOUND_KEYS]
    unknown = sorted(set(settings) - set(keys))
    if unknown:
        close = {k: difflib.get_close_matches(k, keys, n=2) for k in unknown}
        hint = "".join(f"; {k}: did you mean {v}?" for k, v in close.items() if v)
        raise ConfigError(f"{where}: estimator {name!r} does not read {unknown}{hint} (its keys: name, "
                          f"{', '.join(keys)})")
    return from_dict(ESTIMATORS[name].config, settings, f"{where} ({name})")


def block_keys(default: EstimatorConfig) -> list[tuple[str, Any, str]]:
    """The rows `personadual keys rl` lists under ``estimator.``: the name, then each setting once, its help
    prefixed by the estimators that read it (a shared setting names them all)."""
    rows = [("name", default.name, f"the advantage estimator: {', '.join(sorted(ESTIMATORS))}; the block's other "
                                   "keys are that estimator's settings (a key it does not read is an error)")]
    readers: dict[str, list] = {}
    for name, entry in sorted(ESTIMATORS.items()):
        for f in dataclasses.fields(entry.config):
            if f.name not in BOUND_KEYS:
                readers.setdefault(f.name, []).append((name, f))
    for key, pairs in readers.items():
        f = pairs[0][1]
        rows.append((key, f.default, f"{', '.join(n for n, _ in pairs)}: {f.metadata.get('help', '')}"))
    return rows

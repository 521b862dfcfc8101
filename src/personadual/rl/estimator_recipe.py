"""How a recipe writes the advantage estimator: one block, the registered config of that estimator::

    estimator:
      name: dual
      alpha: 8.0
      weight_reasoning: true

Overrides address it by dotted keys (``estimator.name=grpo``, ``estimator.alpha=16``). Before a recipe and
its overrides are merged (`nest_estimator_keys`, run by `personadual.config.load_config`):

- The flat form of personadual <= 0.1 still loads: ``estimator: dual`` as a string and ``alpha``,
  ``prefix_weight``, ``weight_reasoning``, ``marker_mass_coef``, ``reasoning_coef`` at the top level (or
  ``estimator=grpo``, ``alpha=16`` overrides) move into the block, and one FutureWarning says what to
  write instead. The flat form let an estimator carry settings it does not read (a grpo run kept the
  recipe's alpha, unused); those are left out, and the warning names them.
- An override that names another estimator than the recipe's (``estimator.name=grpo`` on a recipe whose
  block configures dual, as the demo trains each estimator from one recipe) drops the recipe's settings
  that estimator does not read: they configured the recipe's estimator. Settings given as overrides are
  kept, so ``estimator.alpha=16`` with grpo is an error, as in a recipe.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import Any, NamedTuple

from ..config import ConfigError
from .estimator_registry import BOUND_KEYS, ESTIMATORS, EstimatorConfig, config_from_block

FLAT_KEYS = ("alpha", "prefix_weight", "weight_reasoning", "marker_mass_coef", "reasoning_coef")  # <= 0.1's top-level keys


class EstimatorInput(NamedTuple):
    """One source's (recipe or overrides) estimator keys, pulled apart from the rest."""

    rest: dict  # every other key
    name: Any  # the estimator named (None: not named)
    block: dict  # the nested block's settings
    flat: dict  # settings given flat, at the top level
    flat_name: bool  # the name was given flat: ``estimator: dual``


def split_input(data: dict, where: str) -> EstimatorInput:
    value = data.get("estimator")
    nested = isinstance(value, dict)
    block = {k: v for k, v in value.items() if k != "name"} if nested else {}
    flat = {k: data[k] for k in FLAT_KEYS if k in data}
    twice = sorted(set(block) & set(flat))
    if twice:
        raise ConfigError(f"{where}: {twice} given twice, at the top level and in the estimator block; keep the block's")
    rest = {k: v for k, v in data.items() if k != "estimator" and k not in FLAT_KEYS}
    name = value.get("name") if nested else value
    return EstimatorInput(rest, name, block, flat, "estimator" in data and not nested)


def keys_read_by(name: Any) -> set[str] | None:
    """The block keys estimator ``name`` reads; None for an unknown name (its block is refused later, by name)."""
    if not isinstance(name, str) or name not in ESTIMATORS:
        return None
    return {f.name for f in dataclasses.fields(ESTIMATORS[name].config)} - set(BOUND_KEYS)


def keep_read(settings: dict, name: Any) -> tuple[dict, list[str]]:
    """``settings`` split into those estimator ``name`` reads and the names of those it does not."""
    reads = keys_read_by(name)
    if reads is None:
        return dict(settings), []
    return {k: v for k, v in settings.items() if k in reads}, sorted(set(settings) - reads)


def nest_estimator_keys(recipe: dict, given: dict, where: str, default_name: str) -> tuple[dict, dict]:
    """(recipe, overrides) with their estimator keys as one block each, ready to merge (see the module docstring)."""
    r, g = split_input(recipe, where), split_input(given, "overrides")
    if not any((r.name is not None, r.block, r.flat, g.name is not None, g.block, g.flat)):
        return recipe, given
    own = default_name if r.name is None else r.name  # the estimator the recipe configures
    final = own if g.name is None else g.name
    r_flat, r_ignored = keep_read(r.flat, own)
    r_block = {**r.block, **r_flat}
    if final != own:
        r_block = keep_read(r_block, final)[0]
    g_flat, g_ignored = keep_read(g.flat, final)
    notes = []
    if r.flat or r.flat_name:
        notes.append(recipe_note(where, own, r_flat, r_ignored))
    if g.flat or g.flat_name:
        notes.append(override_note(g, g_flat, g_ignored, final))
    if notes:
        warnings.warn("the estimator's settings are one block now (docs/dualgrpo.md); " + "; ".join(notes),
                      FutureWarning, stacklevel=4)
    g_block = {**g_flat, **g.block, **({} if g.name is None else {"name": g.name})}
    return ({**r.rest, "estimator": {"name": own, **r_block}},
            {**g.rest, **({"estimator": g_block} if g_block else {})})


def scalar(value: Any) -> str:
    """A value as YAML reads it back (true, 8.0, dual)."""
    return value if isinstance(value, str) else json.dumps(value)


def recipe_note(where: str, name: Any, kept: dict, ignored: list[str]) -> str:
    block = ", ".join([f"name: {scalar(name)}", *(f"{k}: {scalar(v)}" for k, v in kept.items())])
    left = f" ({', '.join(ignored)} left out: estimator {name!r} does not read them)" if ignored else ""
    return f"{where}: write `estimator: {{{block}}}` instead of the top-level keys{left}"


def override_note(g: EstimatorInput, kept: dict, ignored: list[str], final: Any) -> str:
    old = ([f"estimator={scalar(g.name)}"] if g.flat_name else []) + [f"{k}={scalar(v)}" for k, v in g.flat.items()]
    new = ([f"estimator.name={scalar(g.name)}"] if g.flat_name else []) + [f"estimator.{k}={scalar(v)}"
                                                                            for k, v in kept.items()]
    left = f" ({', '.join(ignored)} left out: estimator {final!r} does not read them)" if ignored else ""
    return f"overrides: write {' '.join(new) or 'nothing'} instead of {' '.join(old)}{left}"


def as_estimator_config(value: Any) -> EstimatorConfig:
    """A config built in Python may pass the estimator as its config, a block, or (the old way) a name."""
    if isinstance(value, EstimatorConfig):
        return value
    if isinstance(value, str):
        warnings.warn(f"estimator={value!r}: pass the estimator's config (or a block {{'name': {value!r}, ...}}); "
                      "a bare name is the flat form of personadual <= 0.1", FutureWarning, stacklevel=4)
        value = {"name": value}
    return config_from_block(value, "estimator")

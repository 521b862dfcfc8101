"""Config loading shared by every stage: YAML recipe + ``key=value`` overrides -> a validated dataclass.

Each stage owns one dataclass (fields documented with ``field(metadata={"help": ...})``) that checks
itself in ``__post_init__``; the training stages' extend TRL's own (`SFTConfig`, `GRPOConfig`), so
every TRL option is a key with TRL's checks. Unknown keys are errors that name the file and the key
(with the closest known ones), so a typo in a recipe never silently falls back to a default. The
resolved config is saved next to outputs and loads back.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .files import write_text_atomic

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """``["lr=1e-3", "lora.r=8"]`` -> ``{"lr": 0.001, "lora": {"r": 8}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key=value")
        key, raw = ov.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a dict; nested dataclass fields are built recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        hints = {k: difflib.get_close_matches(k, fields, n=3) for k in unknown}
        hint = "; ".join(f"{k}: did you mean {v}?" for k, v in hints.items() if v)
        known = f"{len(fields)} fields of {cls.__name__}" if len(fields) > 40 else f"known: {sorted(fields)}"
        raise ConfigError(f"{where}: unknown key(s) {unknown}{'; ' + hint if hint else ''} ({known})")
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_type(hints[name])
        if sub and isinstance(value, dict):
            value = _nested(sub, value, f"{where}: {name}")
        kwargs[name] = _coerce_number(hints[name], value, f"{where}: {name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, ImportError) as e:  # ImportError: e.g. a deepspeed config without deepspeed
        raise ConfigError(f"{where}: {e}") from e


def _nested(sub: type, value: dict, where: str):
    """A nested block: its dataclass, or, when that type picks its class from the block itself (``from_mapping``,
    as an estimator's config does by ``name``), what it builds."""
    build = getattr(sub, "from_mapping", None)
    return build(value, where) if build else from_dict(sub, value, where)


def _coerce_number(ftype, value, where: str):
    """YAML 1.1 reads ``5e-5`` as a string; a float field gets a float, or a clear error."""
    allowed = set(typing.get_args(ftype)) or {ftype}
    if value in ("None", "none") and type(None) in allowed and str not in allowed:  # Python spelling of YAML's null
        return None
    if isinstance(value, str) and (allowed & {float, int}) and str not in allowed:
        try:
            return float(value) if float in allowed else int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        return float(value)
    return value


def _dataclass_type(ftype) -> type | None:
    """The dataclass inside a field type (``Lora``, ``Lora | None``), or None."""
    if dataclasses.is_dataclass(ftype):
        return ftype
    return next((a for a in typing.get_args(ftype) if dataclasses.is_dataclass(a)), None)


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> T:
    """YAML recipe (optional) merged with overrides, validated into ``cls``."""
    mapping, where = config_mapping(cls, path, overrides)
    return from_dict(cls, mapping, where)


def config_mapping(cls, path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> tuple[dict, str]:
    """The mapping `load_config` builds ``cls`` from (recipe merged with overrides) and where it came from.

    A study saves this mapping for a worker process, which builds the identical config from it with
    `from_dict`: the full resolved config would not do, as a field left at its default (an ``int`` 0 in a
    ``float`` field) and the same value given explicitly are coerced differently."""
    data: dict = {}
    where = "overrides"
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        where = str(path)
    given = parse_overrides(overrides)
    normalise = getattr(cls, "normalise_inputs", None)  # a stage that moved keys maps its older forms here
    if normalise is not None:
        data, given = normalise(data, given, where)
    merged = _merge(data, given)
    for key, cleared in getattr(cls, "OVERRIDE_CLEARS", {}).items():
        if key in given:  # a value asked for by name beats the recipe's per-case table of it
            merged.pop(cleared, None)
    return merged, where


def help_field(text: str, default=None, factory=None):
    """A dataclass field with its help text (TRL's convention: ``metadata={"help": ...}``)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": text})
    return dataclasses.field(default=default, metadata={"help": text})


def recipe_keys(cls) -> list[tuple[str, Any, str]]:
    """(key, default, help) of every recipe key of ``cls``, sorted; a field whose type lists its own keys
    (``recipe_keys``, as the estimator block does) gives dotted ones (``estimator.alpha``)."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        expand = getattr(_dataclass_type(hints[f.name]), "recipe_keys", None)
        if expand is not None:
            rows += [(f"{f.name}.{key}", value, text) for key, value, text in expand(default)]
        else:
            rows.append((f.name, default, str(f.metadata.get("help", ""))))
    return sorted(rows, key=lambda row: row[0])


def remember_given(cfg) -> None:
    """Keep the values a config was built with, before any check derives others from them: what
    `save_config` writes, so a saved config loads back (TRL derives e.g. generation_batch_size from
    steps_per_generation and refuses both being set)."""
    cfg._given = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}


def fill_trl_defaults(cfg) -> None:
    """What a stage config decides for TRL before TRL's own checks run: CPU when no GPU is visible
    (bf16 is then refused by TRL unless asked for on CPU), the data order seeded like the rest."""
    if cfg.use_cpu is None:
        import torch

        cfg.use_cpu = not torch.cuda.is_available()
    if cfg.data_seed is None:
        cfg.data_seed = cfg.seed
    if cfg.deepspeed:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ImportError(f"deepspeed: {cfg.deepspeed} needs the deepspeed package (pip install "
                              "'personadual[deepspeed]', on a GPU machine); or set deepspeed=null")


def plain(cfg) -> dict:
    """A config's init fields as YAML-safe values (enums by value, nested dataclasses as dicts)."""
    import enum

    def value(v):
        if isinstance(v, enum.Enum):
            return v.value
        if hasattr(v, "to_mapping"):  # a block that names its own class (an estimator's config) writes that block
            return value(v.to_mapping())
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: value(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        return v

    given = getattr(cfg, "_given", None)
    return {f.name: value(given[f.name] if given else getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically; `load_config` reads it back."""
    write_text_atomic(path, yaml.safe_dump(plain(cfg), sort_keys=False))  # every rank saves it

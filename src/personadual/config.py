"""Config loading shared by every stage: YAML recipe + ``key=value`` overrides -> a validated dataclass.

Each stage owns one dataclass (fields documented with ``field(metadata={"help": ...})``) that checks
itself in ``__post_init__``. Unknown keys are errors that name the file and the key, so a typo in
a recipe never silently falls back to a default. The resolved config is saved next to outputs.
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
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_type(hints[name])
        if sub and isinstance(value, dict):
            value = from_dict(sub, value, f"{where}: {name}")
        kwargs[name] = _coerce_number(hints[name], value, f"{where}: {name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def _coerce_number(ftype, value, where: str):
    """YAML 1.1 reads ``5e-5`` as a string; a float field gets a float, or a clear error."""
    allowed = set(typing.get_args(ftype)) or {ftype}
    if value in ("None", "none") and type(None) in allowed:  # Python spelling of YAML's null
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
    return from_dict(cls, _merge(data, parse_overrides(overrides)), where)


def check_passthrough(target: type, extra: dict, own_fields, protected: dict | None = None, where: str = "trl_args") -> None:
    """Check extra settings meant for a library's config dataclass (TRL's SFTConfig/GRPOConfig).

    A key must be a field of ``target`` (a typo would otherwise be lost in a TypeError deep in the
    trainer), must not duplicate one of our own fields (one place per setting), and must not be one
    personadual fixes (``protected``: key -> why, e.g. SFT's completion-only loss).
    """
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: expected a mapping of {target.__name__} fields, got {type(extra).__name__}")
    known = {f.name for f in dataclasses.fields(target)}
    for key in extra:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(f"{where}.{key}: not a field of {target.__module__.split('.')[0]}'s {target.__name__}{hint}")
        if key in own_fields:
            raise ConfigError(f"{where}.{key}: a personadual field of its own: set `{key}` at the top level")
        if key in (protected or {}):
            raise ConfigError(f"{where}.{key}: personadual sets it: {protected[key]}")


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))  # every rank saves it

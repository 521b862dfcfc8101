"""``personadual data conditions``: the Typer command function, wired up in `personadual.cli`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ...cli_args import fail as _fail

# Which option a config field comes from, so a bad value is reported against what the user typed.
_OPTION_OF = {"splits": "--splits", "ambiguous_every": "--ambiguous-every", "option_refs": "--option-refs",
              "keep_splits": "--keep-splits"}


def parse_splits(text: str) -> dict[str, float]:
    """"train=0.8,test=0.2" -> {"train": 0.8, "test": 0.2}; names and sums are checked by the config."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, share = part.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = None
        if not sep or not name.strip() or value is None:
            raise ValueError(f"expected name=share pairs separated by commas (e.g. train=0.8,test=0.2), got {part!r}")
        if name.strip() in out:
            raise ValueError(f"split {name.strip()!r} given twice")
        out[name.strip()] = value
    if not out:
        raise ValueError("give at least one name=share pair (e.g. test=1)")
    return out



def conditions_command(
    input: Path = typer.Option(..., "--in", help="items JSONL (`personadual data load` output, or any item file)"),
    out: Path = typer.Option(..., help="output directory: {split}.jsonl, stats.json, config.json"),
    personas: Optional[Path] = typer.Option(None, help="PersonaHub file for the irrelevant personas "
                                            "(default: the built-in ones)"),
    seed: int = typer.Option(0, help="split, condition and persona draws (same seed and input -> same bytes)"),
    splits: str = typer.Option("test=1", help="name=share,... over train, val, test; shares sum to 1"),
    ambiguous_every: int = typer.Option(3, help="in val/test, about one question in K also gets an ambiguous "
                                        "persona (0: none)"),
    option_refs: str = typer.Option("any", help="any: personas quote short options and name long ones by letter; "
                                    "text: every option named by its text, no letter phrasings (for the cloze "
                                    "form, whose prompt lists no options)"),
    keep_splits: bool = typer.Option(False, help="items that carry a split (`data get` benchmarks) keep it; "
                                     "--splits must name each such split"),
):
    """Put multiple-choice items under PersonaBench's persona conditions: paired in val/test, one each in train."""
    from ..loaders import load_personas
    from ..schema import DataError, read_items
    from .build import ConditionsConfig, write_conditions

    try:
        shares = parse_splits(splits)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--splits")
    try:
        cfg = ConditionsConfig(seed=seed, splits=shares, ambiguous_every=ambiguous_every, option_refs=option_refs,
                               keep_splits=keep_splits)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=_OPTION_OF.get(str(e).split(":")[0]))
    try:
        items = read_items(input)
        persona_list = load_personas(str(personas)) if personas else None
        st = write_conditions(items, cfg, out, persona_list)
    except (DataError, ValueError, FileNotFoundError) as e:  # bad rows, duplicate ids, a missing file
        _fail(str(e))
    typer.echo(json.dumps({"out": str(out), "counts": {name: {"total": c["total"], "condition": c["condition"]}
                                                       for name, c in st["counts"].items()}}, indent=2))

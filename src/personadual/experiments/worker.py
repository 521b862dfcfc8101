"""``python -m personadual.experiments.worker JOBS.json``: the jobs a study saved, run one after the other.

A study's runner (`pipeline`) resolves each job's config in its own process and saves it with what takes it:
``{"jobs": [{"name", "call": "module:function", "config_type": "module:Class", "config": {...},
"kwargs": {...}}]}``. Here each config is built again from its mapping (`personadual.config.from_dict`, as
`load_config` builds one) and the stage's Python API is called with it, so a job runs exactly as it would in
the study's process, on threads of its own. The job file names its function rather than this module knowing
the studies: any stage's API can run here, and nothing is parsed from a command line.

An error that carries an ``exit_code`` (`study_bench.StudyStopped`: a study stopped at its check) ends the
process with that code, so whoever started it can tell a stop from a failure.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import from_dict


def load_object(ref: str) -> Any:
    """``module:name`` -> the function or class it names."""
    module, _, name = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def run_entry(entry: dict, where: str) -> Any:
    """One saved job: its config built again, its function called with it; what the function returns."""
    config = from_dict(load_object(entry["config_type"]), entry["config"], where)
    return load_object(entry["call"])(config, **entry.get("kwargs", {}))


def main(argv: list[str] | None = None) -> None:
    (path,) = argv if argv is not None else sys.argv[1:]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `personadual` sets it: a study's own tokenizer too
    for entry in json.loads(Path(path).read_text())["jobs"]:
        try:
            result = run_entry(entry, f"{path}: {entry['name']}")
        except Exception as e:
            code = getattr(e, "exit_code", None)
            if code is None:
                raise
            print(f"{entry['name']}: {e}", file=sys.stderr, flush=True)
            sys.exit(code)
        if result is not None:
            print(json.dumps(result, indent=2, default=str), flush=True)


if __name__ == "__main__":
    main()

"""What the command modules share: the one way a command fails, and JSON objects read from a flag.

Every command module (`cli`, `eval.commands`, `serve.commands`, `data.*.commands`, `models.commands`,
`experiments.commands`) imports from here, so none of them imports another command module.
"""

from __future__ import annotations

import json
from typing import NoReturn, Optional

import typer

TEMPLATE_KWARGS_HELP = ("JSON object passed to the chat template (e.g. '{\"enable_thinking\": false}'); "
                        "default: the settings saved with the model")


def fail(message: str, code: int = 2) -> NoReturn:
    """A clear one-line error on stderr and exit code 2 (bad input), never a traceback."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def parse_template_kwargs(raw: Optional[str], option: str = "--chat-template-kwargs") -> Optional[dict]:
    """A JSON object from the command line (None = use the model's saved settings)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"not valid JSON: {e.msg}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"expected a JSON object such as '{{\"enable_thinking\": false}}', got {raw!r}",
                                 param_hint=option)
    return value


def stage_settings(items: list[str], stages: tuple[str, ...], flag_stages: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """``STAGE:key=value`` flags (a study's ``--set``) -> stage -> settings lists. A stage of ``flag_stages``
    runs `personadual eval`, so its settings become CLI flag pairs (``eval:--max-new-tokens=24``)."""
    out: dict[str, list[str]] = {}
    for item in items:
        stage, sep, setting = item.partition(":")
        if not sep or stage not in stages or "=" not in setting:
            fail(f"--set {item!r}: expected STAGE:key=value with STAGE one of {', '.join(stages)}")
        out.setdefault(stage, []).extend(setting.split("=", 1) if stage in flag_stages else [setting])
    return out

"""One answered item, whatever the protocol that produced it: the row of predictions.jsonl.

Every protocol (generation with or without modes, options scored by log-likelihood, an endpoint) ends
in `Prediction` rows, so the metrics, the reports and the studies read one format, and a folder
written by one protocol is read back (`load_predictions`) without knowing which.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .. import modes as modes_lib


@dataclass
class Prediction:
    id: str
    base_id: str | None
    family: str
    kind: str
    condition: str
    gold: str
    preferred_mode: str | None
    requested_mode: str  # auto, or the forced mode
    mode: str | None  # the mode the response is in
    answer: str | None
    correct: bool
    well_formed: bool
    reason: str
    p_mode: dict[str, float]
    text: str
    marker_mass: float | None = None  # p(any marker | x) before renormalising (Generation.marker_mass)
    persona_pull: str | None = None  # the option the item's persona points to (Item.persona_pull)
    option_probs: dict[str, float] | None = None  # option -> probability, where options were scored (choice)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> "Prediction":
        """A predictions.jsonl row back as a Prediction; rows written before a field existed get its
        default, and keys that are not fields (the row's ``run``) are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


def load_predictions(path: str | Path) -> dict[str, list[Prediction]]:
    """run -> its predictions, from an eval directory or its predictions.jsonl, in file order."""
    path = Path(path)
    path = path / "predictions.jsonl" if path.is_dir() else path
    runs: dict[str, list[Prediction]] = {}
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                runs.setdefault(row.get("run", modes_lib.AUTO), []).append(Prediction.from_dict(row))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: not a prediction row ({e})") from None
    return runs

"""Crash-safe small files: write to a temporary name, then rename over the target.

A reader (or a resumed run) sees the old file or the new one, never half of one. The temporary
name carries the process id, so ranks of a multi-process job never share one.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

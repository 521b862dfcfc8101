"""Append-only JSONL that survives a kill: one ``write`` per finished row, then flush + fsync.

A kill can only cut the row being written; `repair` trims such a torn last line (a tail without a
newline, or a last line that is not JSON) before a rerun appends, so the file stays valid JSONL and
every row that was complete before the kill is kept. A bad line anywhere else is real corruption
and is reported, never trimmed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def repair(path: Path) -> list[dict]:
    """Trim a torn last line in place; returns the complete rows."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" when the file ends cleanly
    rows, keep = [], 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            keep += len(line) + 1
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if lineno == len(lines) and not tail:
                tail = line  # the torn row got its newline but not all its bytes: still the last line
                break
            raise ValueError(f"{path}:{lineno}: not valid JSON, and not the last line: refusing to trim it") from None
        keep += len(line) + 1
    if keep < len(data):
        log.warning("%s: trimming a torn last line (%d bytes) left by an interrupted run", path, len(data) - keep)
        with path.open("r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return rows


class Appender:
    """Appends JSON rows; each row is on disk (fsync) before `write` returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("ab")

    def write(self, row: dict | str) -> None:
        line = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
        self._f.write(line.encode("utf-8") + b"\n")  # one buffered write: never interleaved
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Crash-safe writes, for every stage: what a kill at any moment may leave behind.

- `write_text_atomic` / `write_lines_atomic`: a whole file at once, written to a temporary name and
  renamed over the target. A reader (or a resumed run) sees the old file or the new one, never half
  of one. The temporary name carries the process id, so ranks of a multi-process job never share one.
- `write_synced`: a small marker file flushed to disk before returning (checkpoints' ``COMPLETE``).
- `open_atomic`: a large binary file streamed under a temporary name and renamed over the target
  only when the ``with`` block ends cleanly; an exception (a failed hash check) removes it, so a
  target that exists is always whole and checked.
- `Appender` / `repair`: append-only JSONL, one row per write, each on disk before the call returns;
  a kill can only cut the row being written, and `repair` trims that torn last line before a rerun
  appends, so every row complete before the kill is kept.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

log = logging.getLogger(__name__)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_lines_atomic(path, [text])


def write_lines_atomic(path: str | os.PathLike, chunks: Iterable[str]) -> int:
    """Write ``chunks`` (each written as is) to ``path`` atomically; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk)
            n += 1
    os.replace(tmp, path)
    return n


def write_synced(path: str | os.PathLike, text: str) -> None:
    """Write a small file and fsync it: when this returns, the file is on disk."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def open_atomic(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose bytes appear at ``path`` only if the block finishes without an
    exception: written to ``path.<pid>.tmp``, fsynced, renamed. On an exception the temporary file
    is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def repair(path: Path) -> list[dict]:
    """Trim a torn last line of an append-only JSONL file in place; returns the complete rows.

    A bad line anywhere but last is real corruption and is reported, never trimmed."""
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

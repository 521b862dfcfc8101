"""The package's shape: no import cycles (function-level imports included), no module a newcomer
cannot read in one sitting, and no private (underscore) name used outside its module: what another
module needs is public, so a module's private names can change without breaking the others."""

import ast
from pathlib import Path

import personadual

ROOT = Path(personadual.__file__).parent
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["personadual", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the personadual modules it imports anywhere in its body (relative imports resolved)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                # `from pkg import submodule` loads the submodule; any other name needs pkg itself
                targets = subs + ([base] if not all(t in modules for t in subs) else [])
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "personadual.tokenization" in graph["personadual.modes"]  # imported inside add_marker_tokens
    assert "personadual.engine.types" in graph["personadual.engine.hf"]  # from .types import ...
    assert "personadual.data.schema" in graph["personadual.data.teach.teach"]  # from ..schema import ...
    assert "personadual.modes" in graph["personadual.data.teach.traces"]  # from ... import modes


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_over_300_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reaches(source: str, where: str = "<string>") -> list[str]:
    """'where:line name' for each private name this source takes from another personadual module: imported
    by name, or read as an attribute of a name that an import of the package bound."""
    tree = ast.parse(source, where)
    found, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "personadual"):
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"{where}:{node.lineno} {alias.name}")
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            bound |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] == "personadual"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.append(f"{where}:{node.lineno} {node.attr}")
    return sorted(found)


def test_the_private_checker_finds_private_reaches():
    planted = (
        "from .jobs import _cli, run_jobs\n"
        "from ..cli_args import fail as _fail\n"
        "from . import jobs\n"
        "import personadual.eval.report as report\n"
        "jobs._cli('x'); jobs.__name__; report._pct(1); self._own\n"
    )
    assert private_reaches(planted, "m.py") == ["m.py:1 _cli", "m.py:5 _cli", "m.py:5 _pct"]
    assert private_reaches("from os import _exit\nimport os\nos._exit(0)\n") == []


def test_no_private_name_crosses_a_module_border():
    found = [hit for path in sorted(ROOT.rglob("*.py"))
             for hit in private_reaches(path.read_text(), str(path.relative_to(ROOT.parent)))]
    assert found == []


def folder_map_gaps(map_text: str, files: list[str]) -> tuple[list[str], list[str]]:
    """(files the map lacks, map entries that are no file): the map's rows are ``path  # what it is``; a row
    ending in ``/`` stands for every file under it."""
    import re

    rows = [m.group(1) for m in re.finditer(r"^(\S+)\s+# ", map_text, re.M)]
    folders = [r for r in rows if r.endswith("/")]
    missing = [f for f in files if f not in rows and not any(f.startswith(d) for d in folders)]
    stale = [r for r in rows if not r.endswith("/") and r not in files]
    return missing, stale


def test_the_folder_map_checker_sees_a_gap():
    text = "a.py  # one\ntests/fixtures/  # rows\ngone.py  # was here\n"
    assert folder_map_gaps(text, ["a.py", "b.py", "tests/fixtures/x.csv"]) == (["b.py"], ["gone.py"])


def test_the_folder_map_lists_every_file():
    """docs/architecture.md's folder map names every file of the checkout (tracked, or new and not ignored)."""
    import subprocess

    repo = ROOT.parents[1]
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in listed if (repo / f).exists()]
    section = (repo / "docs" / "architecture.md").read_text().split("## Folder map", 1)[1]
    missing, stale = folder_map_gaps(section, files)
    assert not missing, f"docs/architecture.md's folder map lacks: {missing}"
    assert not stale, f"docs/architecture.md's folder map names files that do not exist: {stale}"

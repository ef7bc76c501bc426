"""The package's shape, as docs/architecture.md draws it: one-way imports, no cycle, small modules, and a server
that never loads the benchmark."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kb_mcp"
FOUNDATIONS = {"kb_mcp.config", "kb_mcp.errors", "kb_mcp.deadlines", "kb_mcp.logs"}
LEAVES = {"kb_mcp.connection.url"}  # imports nothing of kb_mcp: foundations may use it (config reads the URL)
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_ROOT_MODULES = 300, 250, 8


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, *, top_level_only: bool) -> set[str]:
    """The kb_mcp modules `name` imports (at module level only, or anywhere; TYPE_CHECKING blocks left out)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def test_no_import_cycle() -> None:
    graph = {name: imports(name, top_level_only=True) for name in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])


def test_foundations_import_nothing_above_them() -> None:
    for name in FOUNDATIONS:
        above = imports(name, top_level_only=False) - FOUNDATIONS - LEAVES - {"kb_mcp"}
        assert not above, f"{name} imports {sorted(above)}"
    for name in LEAVES:
        assert not imports(name, top_level_only=False), name


@pytest.mark.parametrize(("layer", "never"), [
    ("kb_mcp.facts", ("kb_mcp.store", "kb_mcp.server", "kb_mcp.connection", "kb_mcp.embeddings", "kb_mcp.cli")),
    ("kb_mcp.connection", ("kb_mcp.store", "kb_mcp.server", "kb_mcp.embeddings", "kb_mcp.cli", "kb_mcp.facts")),
    ("kb_mcp.embeddings", ("kb_mcp.store", "kb_mcp.server", "kb_mcp.connection", "kb_mcp.cli")),
    ("kb_mcp.store", ("kb_mcp.server", "kb_mcp.cli", "kb_mcp.bench")),
    ("kb_mcp.server", ("kb_mcp.cli", "kb_mcp.bench")),
])
def test_data_flows_one_way(layer: str, never: tuple[str, ...]) -> None:
    """tool -> store -> (embeddings, connection) -> Redis: nothing below imports what is above it."""
    for name in MODULES:
        if name == layer or name.startswith(layer + "."):
            wrong = {m for m in imports(name, top_level_only=False) if m.startswith(never)}
            assert not wrong, f"{name} imports {sorted(wrong)}"


def test_the_store_holds_no_mcp_types() -> None:
    for name, path in MODULES.items():
        if name.startswith("kb_mcp.store"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            assert not {m for m in mods if m == "mcp" or m.startswith("mcp.")}, name


def test_modules_and_classes_stay_small() -> None:
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{name}: {len(source.splitlines())} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                assert size <= MAX_CLASS_LINES, f"{name}.{node.name}: {size} lines"
    root = list(PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, sorted(p.name for p in root)


def test_serving_never_imports_the_benchmark() -> None:
    """What `kb-mcp serve` loads (the command line, the server with its tools, HTTP): no kb_mcp.bench module."""
    code = ("import sys\n"
            "from kb_mcp.cli import _parser\n"
            "from kb_mcp.config import Settings\n"
            "from kb_mcp.server.app import build_server\n"
            "import kb_mcp.cli.commands, kb_mcp.server.http\n"
            "args = _parser().parse_args(['serve'])\n"
            "build_server(Settings())\n"
            "print(sorted(m for m in sys.modules if m.startswith('kb_mcp.bench')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_readme_and_the_architecture_page_name_the_tree() -> None:
    """The README's map names every package and root module and nothing that is gone; docs/architecture.md names
    every module."""
    root = PACKAGE.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    for mentioned in re.findall(r"`(kb_mcp/[\w/]+(?:\.py)?)`", readme):
        assert (root / mentioned).exists(), f"README names {mentioned}, which does not exist"
    for path in [*PACKAGE.glob("*.py"), *(p.parent for p in PACKAGE.glob("*/__init__.py"))]:
        name = path.name if path.suffix else path.name + "/"
        if path.name not in ("__init__.py", "__main__.py"):
            assert f"{name}" in readme, f"the README's map misses kb_mcp/{name}"
    rows = (root / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines()
    for path in PACKAGE.rglob("*.py"):
        folder = "kb_mcp/" + "/".join(path.relative_to(PACKAGE).parts[:-1])
        folder = folder.rstrip("/") + "/"
        if path.name == "__init__.py" and path.parent != PACKAGE and path.parent.name not in ("cli",):
            continue
        assert any(folder in row and path.stem in row for row in rows), f"docs/architecture.md misses {path}"

"""The shape of the code (DESIGN.md): the direction of imports (``features`` imports
nothing of ours; ``models`` and ``monitoring`` import ``features``; the adapters
(``producers``, ``stream``) import the core), no two modules importing each other, directly
or around a circle, and no module over 400 lines.

Read from the source with :mod:`ast`, so that an import inside a function counts for the
direction (it still couples the packages), while only imports run at import time count
for circles (a function-level import is how a circle is legitimately broken).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("features", "models", "monitoring", "producers", "stream")
#: What each package may import of ours (itself always).
ALLOWED = {
    "features": set(),
    "models": {"features"},
    "monitoring": {"features"},
    "producers": {"features", "models", "monitoring"},
    "stream": {"features", "models", "monitoring", "producers"},
}


def modules() -> dict[str, Path]:
    """Every module of ours, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


KNOWN = modules()


def imports(path: Path, name: str, top_level_only: bool) -> Iterator[str]:
    """The modules of ours that ``path`` (module ``name``) imports."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in nodes:
        if (
            isinstance(node, ast.If)
            and top_level_only
            and "TYPE_CHECKING" in ast.unparse(node.test)
        ):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            # ``from package import module`` imports the module; ``from module import name``
            # the module
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in KNOWN else base
                for alias in node.names
            ]
        else:
            continue
        yield from (t for t in targets if t.split(".")[0] in PACKAGES)


def test_packages_import_only_in_the_allowed_direction() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, path in KNOWN.items()
        for target in imports(path, name, top_level_only=False)
        if (theirs := target.split(".")[0]) != (ours := name.split(".")[0])
        and theirs not in ALLOWED[ours]
    )
    assert wrong == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    known = KNOWN
    graph = {
        name: {t for t in imports(path, name, top_level_only=True) if t in known}
        for name, path in known.items()
    }
    # Tarjan's strongly connected components: a component of more than one module is a
    # circle (a package's __init__ importing its own modules is not one).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []


@pytest.mark.parametrize("package", ["features", "models", "monitoring"])
def test_the_check_sees_an_import_against_the_direction(package: str, tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text("def late():\n    from stream.wiring import build_store\n")
    assert list(imports(source, f"{package}.bad", top_level_only=False)) == ["stream.wiring"]
    assert "stream" not in ALLOWED[package]


def test_no_module_is_over_400_lines() -> None:
    """DESIGN.md's rule of thumb, held: a module longer than this does more than one thing."""
    long = {
        name: n for name, path in KNOWN.items() if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


#: The packages whose public API is documented with numpydoc ``Parameters`` sections, and
#: the modules of ``stream`` that other code builds on (the CLI, the runtime's roles and
#: the benches document their options with ``--help`` and their own docs).
DOCUMENTED = ("features", "models", "monitoring", "producers")
DOCUMENTED_MODULES = frozenset(
    {
        "stream.wiring",
        "stream.sources",
        "stream.offline",
        *(f"stream.serving.{m}" for m in ("app", "guard", "decisions", "admin", "schemas")),
        *(f"stream.scorecard.{m}" for m in ("embedded", "judge", "report", "options")),
    }
)


def _parameters_named(doc: str) -> set[str] | None:
    """The names a numpydoc ``Parameters`` section lists (None: no such section).

    >>> sorted(_parameters_named("Sum.\\n\\nParameters\\n----------\\na, b\\n    Terms.\\n"))
    ['a', 'b']
    >>> _parameters_named("Sum of a and b.") is None
    True
    """
    lines = doc.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line == "Parameters" and set(lines[i + 1]) == {"-"}:
            break
    else:
        return None
    names: set[str] = set()
    for line, underline in zip(lines[i + 2 :], [*lines[i + 3 :], ""], strict=True):
        if underline and set(underline) == {"-"}:
            break  # the next section
        if line and not line[0].isspace():
            names |= {n.strip().lstrip("*") for n in line.split(":")[0].split(",")}
    return names


def undocumented_parameters(path: Path, root: Path = ROOT) -> list[str]:
    """Public functions, methods and constructors of ``path`` with two or more parameters
    whose docstring (a constructor's: its class's or its own) does not name each of them
    in a ``Parameters`` section."""
    problems: list[str] = []

    def visit(body: list[ast.stmt], prefix: str, class_doc: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.", ast.get_docstring(node) or "")
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name.startswith("_") and node.name != "__init__":
                continue
            if any(ast.unparse(d) in ("property", "overload") for d in node.decorator_list):
                continue
            a = node.args
            given = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
            given += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
            params = [p for p in given if p not in ("self", "cls")]
            if len(params) < 2:
                continue
            doc = ast.get_docstring(node) or ""
            if doc.startswith(":meth:`") and doc.split("`")[1].endswith(f".{node.name}"):
                continue  # an implementation that names the method it implements: its Parameters
            named = _parameters_named(doc)
            if node.name == "__init__" and named is None:
                named = _parameters_named(class_doc)
            missing = sorted(set(params) - (named or set()))
            if missing:
                problems.append(f"{path.relative_to(root)}:{node.lineno} {prefix}{node.name}")

    visit(ast.parse(path.read_text()).body, "", "")
    return problems


def test_public_api_documents_its_parameters() -> None:
    """numpydoc ``Parameters`` on the core's and the producers' public API: every public
    callable with two or more parameters names each one (one parameter is described in
    the summary line)."""
    problems = [
        problem
        for name, path in KNOWN.items()
        if name.split(".")[0] in DOCUMENTED or name in DOCUMENTED_MODULES
        for problem in undocumented_parameters(path)
    ]
    assert problems == []


def test_the_parameters_check_sees_a_missing_one(tmp_path: Path) -> None:
    source = tmp_path / "api.py"
    source.write_text(
        "def scale(x, factor):\n"
        '    """Scale.\n\n    Parameters\n    ----------\n    x\n        A value.\n    """\n\n\n'
        "class Box:\n"
        '    """A box.\n\n    Parameters\n    ----------\n    width, height\n        Size.\n'
        '    """\n\n'
        "    def __init__(self, width, height):\n        pass\n\n"
        "    def fit(self, other, margin):\n"
        '        """Fit ``other`` in, with ``margin``."""\n'
    )
    assert undocumented_parameters(source, tmp_path) == ["api.py:1 scale", "api.py:23 Box.fit"]

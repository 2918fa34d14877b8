"""Dependencies point one way: no import circle between mini_llm's modules, nor between its
parts (a subpackage counts as one part), whether the import is at the top of a module or
inside a function. Imports under `if TYPE_CHECKING:` are for annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "mini_llm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        child: ast.AST
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("mini_llm"):
                found.add(target)
                for alias in node.names:  # `from . import x` may name a module
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mini_llm"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _part(module: str) -> str:
    """`mini_llm.routing.router` -> `routing`; `mini_llm.config` -> `config`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle_between_modules() -> None:
    # the package's own __init__ re-exports lazily; it is the top, importing nobody at load
    graph = {m: deps for m, deps in _graph().items() if m != "mini_llm"}
    for deps in graph.values():
        deps.discard("mini_llm")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_import_circle_between_parts() -> None:
    parts: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        if module == "mini_llm":
            continue
        mine = _part(module)
        parts.setdefault(mine, set()).update(
            _part(d) for d in deps if d != "mini_llm" and _part(d) != mine
        )
    assert _cycle(parts) is None, " -> ".join(_cycle(parts) or [])


def test_the_checker_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        ("providers", {"gateway", "routing", "config", "dialects", "policies", "sdk", "cli"}),
        ("dialects", {"gateway", "providers", "routing", "config", "sdk", "cli"}),
        ("canonical", {"providers", "dialects", "gateway", "routing"}),
        ("state", {"providers", "dialects", "gateway", "routing", "config"}),
    ],
)
def test_layers(part: str, forbidden: set[str]) -> None:
    """Provider formats are pure translation; client dialects know no provider."""
    used = {
        _part(d)
        for m, deps in _graph().items()
        if _part(m) == part
        for d in deps
        if d != "mini_llm"
    }
    assert not used & forbidden, f"{part} imports {sorted(used & forbidden)}"

"""The imports of a package's modules, read with `ast` (top-level and inside functions alike), and their
closure: shared by tests/test_layers.py and tests/test_dvc_deps.py."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    """acsa/model/acsa.py -> acsa.model.acsa; acsa/data/__init__.py -> acsa.data (`root` holds acsa/)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_file(name: str, root: Path) -> Path | None:
    """The file of module `name` under `root` (a module file or a package's __init__.py), or None."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(
    source: str, importer: str, root: Path, package: str, is_package: bool = False
) -> set[str]:
    """Modules of `package` that `source` (module `importer`) imports, anywhere in its code. `from p import x`
    counts module p.x when x is a module, else p."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importer's package
                anchor = importer.split(".") if is_package else importer.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = []
            for alias in node.names:
                child = f"{base}.{alias.name}"
                names.append(child if module_file(child, root) else base)
        else:
            continue
        found.update(name for name in names if name == package or name.startswith(f"{package}."))
    return found


def package_imports(root: Path, package: str) -> dict[str, set[str]]:
    """Every module of `package` (a folder under `root`) -> the package's modules it imports."""
    graph = {}
    for path in sorted((root / package).rglob("*.py")):
        name = module_name(path, root)
        graph[name] = imported_modules(path.read_text(), name, root, package, path.name == "__init__.py")
    return graph


def closure(start: Iterable[str], graph: dict[str, set[str]]) -> set[str]:
    """`start` and every module of the graph they import, directly or not."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def is_trivial_init(path: Path) -> bool:
    """A package __init__.py that holds nothing but a docstring and assignments of constants (`__version__`):
    importing it runs no code that could change a result."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            continue
        return False
    return True

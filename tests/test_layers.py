"""The package is layered (README, Layout): a module imports only from its own layer or below, and a stage
never imports another stage. Imports are read with `ast`, those inside functions included."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from import_graph import is_trivial_init, package_imports

# Lowest first. A module belongs to the entry with the longest matching name (the package itself matches only
# itself); a module of acsa that no entry names is an error (add it here and to the README's layout section).
LAYERS = {
    "acsa": 0,  # the package itself: version only
    "acsa.config": 0,
    "acsa.errors": 0,
    "acsa.paths": 0,
    "acsa.runtime": 0,
    "acsa.cli": 0,
    "acsa.storage": 0,
    "acsa.data": 1,
    "acsa.kernels": 2,
    "acsa.model": 3,
    "acsa.scoring": 4,
    "acsa.training": 5,
    "acsa.analysis": 6,
    "acsa.reports": 6,
    "acsa.search": 6,  # the search tool: above model, scoring and data, beside the reports that use it
}
# acsa/<stage>.py: layer 7; __main__ is the `acsa` command (index, search, serve), a leaf like the stages
STAGES = (
    "prepare",
    "embed_text",
    "train",
    "evaluate",
    "findings",
    "explain",
    "reference_points",
    "embed_images",
    "probe",
    "report",
    "__main__",
)
STAGE_LAYER = 7


def layer_table(package: str, layers: dict[str, int], stages: tuple[str, ...]) -> dict[str, int]:
    return {**layers, **{f"{package}.{stage}": STAGE_LAYER for stage in stages}}


def layer_of(module: str, table: dict[str, int]) -> int | None:
    package = module.split(".")[0]
    matches = [n for n in table if module == n or (n != package and module.startswith(f"{n}."))]
    return table[max(matches, key=len)] if matches else None


def violations(graph: dict[str, set[str]], table: dict[str, int]) -> list[str]:
    """Every import that goes up a layer or from a stage to a stage, and every module outside the table."""
    problems = []
    for module, imports in sorted(graph.items()):
        own = layer_of(module, table)
        if own is None:
            problems.append(f"{module}: not in the layer table")
            continue
        for target in sorted(imports - {module}):
            layer = layer_of(target, table)
            if layer is None:
                problems.append(f"{module} imports {target}, which is not in the layer table")
            elif own == layer == STAGE_LAYER:
                problems.append(f"{module} imports {target}: a stage imports a stage")
            elif layer > own:
                problems.append(f"{module} (layer {own}) imports {target} (layer {layer}), a higher layer")
    return problems


def test_acsa_is_layered_and_stages_are_leaves():
    table = layer_table("acsa", LAYERS, STAGES)
    assert violations(package_imports(REPO, "acsa"), table) == []
    assert {
        f"acsa.{p.stem}" for p in (REPO / "acsa").glob("*.py") if layer_of(f"acsa.{p.stem}", table) == 7
    } == {f"acsa.{stage}" for stage in STAGES}


def test_package_init_files_run_no_code():
    """Importing a subpackage runs nothing (so a module's import closure is its modules' files)."""
    inits = sorted((REPO / "acsa").rglob("__init__.py"))
    assert len(inits) == 1 + len([p for p in (REPO / "acsa").iterdir() if (p / "__init__.py").is_file()])
    assert [p for p in inits if not is_trivial_init(p)] == []


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


FAKE_LAYERS = {"fake": 0, "fake.core": 0, "fake.data": 1, "fake.model": 3}
FAKE = {
    "fake/__init__.py": '"""A fake package."""\n',
    "fake/core.py": "import os\n",
    "fake/data/__init__.py": "",
    "fake/data/reader.py": "from fake import core\nfrom fake.core import os\n",
    "fake/model/__init__.py": "",
    "fake/model/net.py": "from fake.data import reader\nfrom . import layers\n",
    "fake/model/layers.py": "import fake.core\n",
    "fake/train.py": "from fake.model.net import reader\n",
    "fake/evaluate.py": "from fake.model import net\n",
}


def fake_violations(tmp_path: Path, **changed: str) -> list[str]:
    write(
        tmp_path, {**FAKE, **{f"fake/{name.replace('__', '/')}.py": text for name, text in changed.items()}}
    )
    return violations(
        package_imports(tmp_path, "fake"), layer_table("fake", FAKE_LAYERS, ("train", "evaluate"))
    )


def test_checker_accepts_a_layered_fake_package(tmp_path):
    assert fake_violations(tmp_path) == []


@pytest.mark.parametrize(
    ("changed", "problem"),
    [
        (
            {"data__reader": "def load():\n    from fake.model.net import x\n"},  # inside a function
            "fake.data.reader (layer 1) imports fake.model.net (layer 3), a higher layer",
        ),
        (
            {"core": "import fake.data.reader as r\n"},
            "fake.core (layer 0) imports fake.data.reader (layer 1)",
        ),
        (
            {"data__reader": "from ..model import layers\n"},
            "fake.data.reader (layer 1) imports fake.model.layers",
        ),
        (
            {"evaluate": "from fake import train\n"},
            "fake.evaluate imports fake.train: a stage imports a stage",
        ),
        ({"evaluate": "def main():\n    import fake.train\n"}, "fake.evaluate imports fake.train: a stage"),
        (
            {"data__reader": "from fake.explain import x\n"},
            "fake.data.reader imports fake.explain, which is not",
        ),
        ({"extra": "x = 1\n"}, "fake.extra: not in the layer table"),
    ],
)
def test_checker_finds_a_bad_import(tmp_path, changed, problem):
    found = fake_violations(tmp_path, **changed)
    assert any(line.startswith(problem) for line in found), found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (imports inside functions count too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ()) - {node}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_module_imports_itself_through_others():
    """No import circle (e.g. config -> cli -> config): each module can be read, and loaded, on its own."""
    assert import_cycles(package_imports(REPO, "acsa")) == []


def test_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]

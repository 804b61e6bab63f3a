"""dvc.yaml lists, for every stage, each file of the package that the stage's code imports (its import
closure, functions' imports included, and for the report stages the notebook's too): change one and
`dvc repro` reruns the stage. A dependency listed as a folder covers its files. Conversely, every code
dependency listed is part of the closure (a folder: every module in it), so that no stage reruns for code it
does not use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from import_graph import closure, imported_modules, is_trivial_init, module_file, package_imports

# the default pipeline and the optional one (its stages run in the repository root: wdir ..)
PIPELINES = {"": REPO / "dvc.yaml", "optional/dvc.yaml:": REPO / "optional" / "dvc.yaml"}
STAGES = {
    f"{prefix}{name}": stage
    for prefix, path in PIPELINES.items()
    for name, stage in yaml.safe_load(path.read_text())["stages"].items()
}


def stage_definitions() -> dict[str, dict]:
    """name -> {cmd, deps}; a foreach stage once, by its template (${key} left in)."""
    return {name: stage.get("do", stage) for name, stage in STAGES.items()}


def code_closure(cmd: str, root: Path = REPO, package: str = "acsa") -> set[Path]:
    """The package files (relative to `root`) that `cmd` runs: its `-m` module and every module it imports,
    and the imports of the notebooks (notebooks/*.py) it names. Trivial package __init__ files are left
    out (tests/test_layers.py checks that every one is)."""
    graph = package_imports(root, package)
    start = set(re.findall(rf"-m ({package}(?:\.\w+)*)", cmd))
    # `-m PACKAGE` runs PACKAGE/__main__.py
    start |= {f"{m}.__main__" for m in start if (root.joinpath(*m.split(".")) / "__main__.py").is_file()}
    for notebook in re.findall(r"\S+\.py\b", cmd):
        start |= imported_modules((root / notebook).read_text(), "__notebook__", root, package)
    files = {module_file(name, root) for name in closure(start, graph)}
    return {
        f.relative_to(root)
        for f in files
        if f is not None and not (f.name == "__init__.py" and is_trivial_init(f))
    }


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


def code_deps(deps: list[str], package: str = "acsa") -> list[str]:
    return [dep for dep in deps if Path(dep).parts[0] == package]


def uncovered(stage: dict) -> list[str]:
    return sorted(str(f) for f in code_closure(stage["cmd"]) if not covered(f, stage["deps"]))


def modules_in(dep: str, root: Path = REPO) -> set[Path]:
    """The files a code dependency stands for: itself, or the modules of a folder (trivial __init__ aside)."""
    path = root / dep
    if path.is_file():
        return {Path(dep)}
    files = (f for f in path.rglob("*.py") if not (f.name == "__init__.py" and is_trivial_init(f)))
    return {f.relative_to(root) for f in files}


def unused(stage: dict) -> list[str]:
    """Code deps that are not in the closure: a file it lacks, or a folder with a module it lacks."""
    files = code_closure(stage["cmd"])
    return [dep for dep in code_deps(stage["deps"]) if not modules_in(dep) or modules_in(dep) - files]


@pytest.mark.parametrize("name", list(stage_definitions()))
def test_stage_deps_cover_its_import_closure(name):
    stage = stage_definitions()[name]
    assert "-m acsa." in stage["cmd"]
    assert uncovered(stage) == [], f"dvc.yaml, stage {name}: add these to deps"
    assert unused(stage) == [], f"dvc.yaml, stage {name}: not imported by the stage, remove from deps"
    for notebook in re.findall(r"\S+\.py\b", stage["cmd"]):
        assert notebook in stage["deps"]


def test_every_stage_is_checked():
    assert {
        "prepare",
        "embed_text",
        "train",
        "evaluate",
        "train_study",
        "evaluate_study",
        "embed_images",
        "convergence",
        "probe",
        "findings",
        "explain",
        "reference_points",
        "optional/dvc.yaml:sweep",
        "optional/dvc.yaml:train_end_to_end",
        "optional/dvc.yaml:evaluate_end_to_end",
        "optional/dvc.yaml:findings_end_to_end",
    } <= set(stage_definitions())
    assert any("notebooks/" in stage["cmd"] for stage in stage_definitions().values())


def test_the_check_sees_a_missing_dep_and_a_function_level_import(tmp_path):
    (tmp_path / "pkg" / "lib").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text('"""A package."""\n')
    (tmp_path / "pkg" / "lib" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "lib" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "lib" / "b.py").write_text("def f():\n    from pkg.lib import a\n")
    (tmp_path / "pkg" / "stage.py").write_text("from pkg.lib.b import f\n")
    (tmp_path / "nb.py").write_text("import pkg.lib.a\n")
    files = code_closure("python -m pkg.stage nb.py", tmp_path, "pkg")
    assert files == {Path("pkg/stage.py"), Path("pkg/lib/b.py"), Path("pkg/lib/a.py")}
    assert not covered(Path("pkg/lib/a.py"), ["pkg/stage.py", "pkg/lib/b.py"])
    assert covered(Path("pkg/lib/a.py"), ["pkg/lib"])

"""dvc.yaml's `deps` are the code that makes each stage's outputs: every pipeline module a
stage's command imports (transitively, also inside functions) is a dependency, unless it is
bookkeeping listed below. Otherwise editing it leaves `dvc repro` saying "up to date"."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from pipeline.paths import ROOT

# Modules that cannot change what a stage writes into its DVC outputs, so they are no deps.
BOOKKEEPING = {
    "pipeline/__init__.py": "an empty package marker",
    "pipeline/stages/__init__.py": "an empty package marker",
    "pipeline/errors.py": "exception classes: what a fault is called, not what a stage writes",
    "pipeline/paths.py": "where files are; a moved path changes dvc.yaml's outs itself",
    "pipeline/entry.py": "argv, logging, exit codes, the backend switch params.runner decides",
    "pipeline/io.py": "how a file is written (atomically), not what is in it",
    "pipeline/provenance.py": "git/DVC tags and file hashes for MLflow, not DVC outputs",
    "pipeline/tracking.py": "MLflow logging; nothing it does reaches a DVC output",
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path) -> set[str]:
    """The pipeline modules (repo-relative .py paths) `path` imports at run time."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for statement in node.body
        for child in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "pipeline" or name.startswith("pipeline."):
                for candidate in (
                    f"{name.replace('.', '/')}.py",
                    f"{name.replace('.', '/')}/__init__.py",
                ):
                    if (ROOT / candidate).is_file():
                        found.add(candidate)
    return found


def stage_modules(module: str) -> set[str]:
    """Every pipeline module the stage module `module` reaches, not entering bookkeeping."""
    start = f"{module.replace('.', '/')}.py"
    seen, todo = {start}, [start]
    while todo:
        for found in imported_modules(ROOT / todo.pop()):
            if found not in seen:
                seen.add(found)
                if found not in BOOKKEEPING:
                    todo.append(found)
    return seen


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, a foreach stage by its `do` body."""
    listed = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in listed.items()}


@pytest.mark.parametrize("name", list(stages()))
def test_every_module_a_stage_imports_is_a_dependency(name: str) -> None:
    stage = stages()[name]
    command = stage["cmd"].split("#")[0].split()
    assert command[:2] == ["python", "-m"], stage["cmd"]
    deps = {str(dep) for dep in stage["deps"]}
    missing = sorted(stage_modules(command[2]) - deps - set(BOOKKEEPING))
    assert not missing, f"dvc.yaml stage {name} lacks deps {missing}"


def test_the_walk_follows_imports_inside_functions() -> None:
    reached = stage_modules("pipeline.stages.train")
    # train imports these inside main() or its helpers; augment only through models' builder
    for module in ("pipeline/training.py", "pipeline/augment.py", "pipeline/data.py"):
        assert module in reached
    assert "pipeline/serving.py" not in reached  # only via tracking, which is bookkeeping


# Params sections a stage reads that cannot change its DVC outputs.
BOOKKEEPING_PARAMS = {
    "tracking": "where and how MLflow runs are logged, not what the outputs hold",
}
# A section one stage reads whole although only the keys it lists can change its outputs.
READ_WHOLE = {
    ("download", "data"): "mirrors, timeouts, retries: where the bytes come from; data.files' "
    "sha256 (listed) decides what they are",
    ("preprocess", "data"): "data.image_shape and data.num_classes (listed); the files' bytes "
    "are the data/raw dep",
    ("train_mlp", "preprocess"): "logged as run params; it acts through the dataset.npz dep",
    ("train_cnn", "preprocess"): "logged as run params; it acts through the dataset.npz dep",
    ("train_mlp_replicate", "preprocess"): "as train_mlp",
    ("train_cnn_replicate", "preprocess"): "as train_cnn",
}


def params_read(path: Path) -> set[str]:
    """The dotted params keys a stage module reads as `params.<section>[.<key>]`."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if id(node) in inner:
            continue  # part of a longer chain, seen whole from its outermost attribute
        chain: list[str] = []
        while isinstance(node, ast.Attribute):
            chain.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "params" and chain:
            # params.model(name), .replicate(name), .replicate_names(model): models.<kind>.<name>
            if chain[0] in ("model", "replicate", "replicate_names"):
                continue
            found.add(".".join(chain[:2]))
    return found


@pytest.mark.parametrize("name", list(stages()))
def test_every_param_a_stage_reads_is_listed(name: str) -> None:
    stage = stages()[name]
    module = stage["cmd"].split("#")[0].split()[2]
    listed = {str(key) for key in stage.get("params", [])}
    unlisted = sorted(
        key
        for key in params_read(ROOT / f"{module.replace('.', '/')}.py")
        if key.split(".")[0] not in BOOKKEEPING_PARAMS
        and (name, key) not in READ_WHOLE
        and not any(key == entry or key.startswith(f"{entry}.") for entry in listed)
    )
    assert not unlisted, f"dvc.yaml stage {name} reads params {unlisted} it does not list"

"""Pipeline consistency: dvc.yaml vs stage scripts vs params.yaml, and the package's import layering.

Stage deps name the stage script and the package folders (subpackages) it imports, directly or not.
Stages whose outputs are pinned by checksums (downloads, conversions) instead list the exact module files
that produce those outputs, leaving out the plumbing that cannot change their bytes (errors, CLI, atomic
writes), so editing unrelated code never re-runs a 110 MB download. A subproject (systems/*, its own DVC
project) lists module files for every stage: the package lies outside its root, where its `.dvcignore`
does not reach, so a folder dep would hash `__pycache__` too.
"""
import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "diffpipe"
PINNED_STAGES = {"fetch_mnist", "fetch_emoji", "inception_weights"}
PLUMBING = {"diffpipe.core.errors", "diffpipe.core.cli", "diffpipe.core.files"}


def module_file(name: str) -> Path:
    path = SRC / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def direct_imports(path: Path, module: str) -> set[str]:
    """Dotted `diffpipe.*` modules a file imports (absolute and relative)."""
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("diffpipe"):
                continue
            for alias in node.names:  # `from diffpipe.metrics import features` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if module_file(candidate).exists() else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("diffpipe."))
    return {m for m in found if module_file(m).exists() and module_file(m).name != "__init__.py"}


def transitive_imports(script: Path) -> set[str]:
    todo, seen = list(direct_imports(script, "__main__")), set()
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(direct_imports(module_file(mod), mod))
    return seen


PIPELINES = [ROOT / "dvc.yaml", *sorted((ROOT / "systems").glob("*/dvc.yaml"))]


def load_pipeline(path: Path) -> dict:
    """name -> stage body with the file's plain `vars` substituted; a `foreach` stage gives its `do` template."""
    doc = yaml.safe_load(path.read_text())
    variables = {k: v for entry in doc.get("vars", []) if isinstance(entry, dict) for k, v in entry.items()}
    text = path.read_text()
    for k, v in variables.items():
        text = text.replace("${" + k + "}", str(v))
    raw = yaml.safe_load(text)["stages"]
    return {name: stage.get("do", stage) for name, stage in raw.items()}


def stage_cases() -> list:
    return [pytest.param(pipeline, name, stage, id=f"{pipeline.parent.relative_to(ROOT)}:{name}")
            for pipeline in PIPELINES for name, stage in load_pipeline(pipeline).items()]


@pytest.mark.parametrize("pipeline, name, stage", stage_cases())
def test_stage_deps_are_its_script_and_the_package_code_it_imports(pipeline, name, stage):
    base = pipeline.parent
    script = (base / re.search(r"\S*stages/\w+\.py", stage["cmd"]).group(0)).resolve()
    deps = {(base / d).resolve() for d in stage["deps"] if isinstance(d, str)}
    assert script in deps, f"its script {script.name} is not a dependency"
    # Every stage starts through the launcher, which sets up the process (core/launch.py) and runs the script.
    words = stage["cmd"].split()
    launcher = (base / words[1]).resolve()
    assert words[0] == "python" and launcher == (ROOT / "scripts" / "launch.py").resolve(), words[:2]
    assert launcher in deps, "scripts/launch.py is not a dependency"
    modules = transitive_imports(script) | {"diffpipe.core.launch"}
    if name in PINNED_STAGES:
        expected = {module_file(m).resolve() for m in modules - PLUMBING}
    elif pipeline.parent != ROOT:
        expected = {module_file(m).resolve() for m in modules}
    else:
        expected = {(PACKAGE / m.split(".")[1]).resolve() for m in modules}
    listed = {d for d in deps if d.is_relative_to(PACKAGE.resolve())}
    assert listed == expected, (f"package deps {sorted(str(d.relative_to(ROOT)) for d in listed)} != imported "
                                f"{sorted(str(d.relative_to(ROOT)) for d in expected)}")


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_lock_names_only_stages_that_exist(pipeline):
    """dvc.lock keeps an entry for a stage removed from dvc.yaml until someone deletes it: a stale entry
    describes commands and outputs that no longer exist."""
    from dvc.repo import Repo

    with Repo(str(pipeline.parent)) as repo:
        live = {stage.addressing.split(":")[-1] for stage in repo.index.stages}
    locked = set(yaml.safe_load((pipeline.parent / "dvc.lock").read_text())["stages"])
    assert locked <= live, f"{pipeline.parent / 'dvc.lock'} names stages not in dvc.yaml: {sorted(locked - live)}"
    assert live == set(load_pipeline(pipeline))  # the DVC names are dvc.yaml's (no foreach stages here)


def test_imports_point_one_way():
    """core imports no other subpackage; nets know nothing of diffusion; samplers nothing of networks;
    pictures only draw; data and sources do not reach into the model code; the classifier stands apart from
    the diffusion code (so editing that never retrains the classifier)."""
    forbidden = {"core": {"sources", "data", "nets", "diffusion", "metrics", "pictures", "classifier"},
                 "nets": {"diffusion", "metrics", "pictures", "data", "sources", "classifier"},
                 "data": {"nets", "diffusion", "metrics", "pictures", "sources", "classifier"},
                 "pictures": {"nets", "diffusion", "metrics", "data", "sources", "classifier"},
                 "sources": {"nets", "diffusion", "metrics", "pictures", "classifier"},
                 "diffusion": {"metrics", "pictures", "sources", "classifier"},
                 "classifier": {"nets", "diffusion", "metrics", "pictures", "sources"}}
    for path in PACKAGE.rglob("*.py"):
        sub = path.relative_to(PACKAGE).parts[0]
        module = "diffpipe." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        imported = {m.split(".")[1] for m in direct_imports(path, module)}
        assert not imported & forbidden.get(sub, set()), f"{module} imports {imported & forbidden[sub]}"
    samplers = direct_imports(PACKAGE / "diffusion" / "samplers.py", "diffpipe.diffusion.samplers")
    assert not any(m.startswith("diffpipe.nets") for m in samplers)


def test_package_layout_is_grouped_and_names_no_stdlib_module():
    import sys
    for folder in [PACKAGE, *[p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, f"{folder.relative_to(ROOT)} holds {len(modules)} modules"
        for p in modules:
            assert p.stem not in sys.stdlib_module_names, f"{p.relative_to(ROOT)} is named like a standard module"


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: str(p.relative_to(ROOT)))
def test_stage_params_exist_in_params_yaml(pipeline):
    params = yaml.safe_load((pipeline.parent / "params.yaml").read_text())
    for name, stage in load_pipeline(pipeline).items():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else None
            if keys is None or "${" in keys:  # templated keys are checked by dvc itself
                continue
            node = params
            for part in keys.split("."):
                assert part in node, f"stage {name} lists param {keys}, which params.yaml lacks"
                node = node[part]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_classifier_stage_exactly_where_the_data_are_labelled(pipeline):
    """Labelled data (prepare.num_classes > 0) write labels; a `classifier` section goes with a classifier stage,
    whose checkpoint evaluate reads; unlabelled data (System B) have neither."""
    params = yaml.safe_load((pipeline.parent / "params.yaml").read_text())
    stages = load_pipeline(pipeline)
    labelled = params["prepare"]["num_classes"] > 0
    assert ("--out-train-labels" in stages["prepare"]["cmd"]) == labelled
    assert ("classifier" in stages) == (params["classifier"] is not None)
    assert ("--classifier" in stages["evaluate"]["cmd"]) == ("classifier" in stages)
    if "classifier" in stages:
        out = re.search(r"--out (\S+)", stages["classifier"]["cmd"]).group(1)
        assert out in stages["evaluate"]["deps"] and f"--classifier {out}" in stages["evaluate"]["cmd"]


def test_scripts_take_paths_only_from_the_command_line():
    """No stage script hard-codes a data/, models/, metrics/ or plots/ path (paths live in dvc.yaml)."""
    for script in (ROOT / "stages").glob("*.py"):
        text = script.read_text()
        assert not re.search(r"[\"'](data|models|metrics|plots|samples|dvclive|reports|costs)/", text), \
            f"{script.name} hard-codes a path"


def test_the_repository_stands_alone():
    """Nothing tracked points at files outside the repository or at documents it does not carry."""
    import subprocess
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    # Written with classes ([a], \s) so that this file does not itself contain the phrases it looks for.
    pattern = re.compile(r"\.\./sh[a]red|SP[E]C\.md|SP[E]C\sSystem|STYL[E]\shabit|issue \"")
    offenders = [f for f in tracked if (ROOT / f).is_file() and f.endswith((".py", ".md", ".yaml", ".sh", ".yml"))
                 and pattern.search((ROOT / f).read_text(errors="ignore"))]
    assert offenders == []
    for doc in ("docs/systems/mnist-ddpm.md", "docs/systems/flowers-ddim.md"):
        assert (ROOT / doc).is_file(), doc


@pytest.mark.parametrize("project", [ROOT, *sorted(p.parent for p in (ROOT / "systems").glob("*/dvc.yaml"))],
                         ids=lambda p: str(p.relative_to(ROOT)) or ".")
def test_each_pipeline_is_its_own_dvc_project_with_analytics_off(project):
    assert (project / ".dvc").is_dir(), f"{project} is not a DVC project (dvc init --subdir)"
    assert re.search(r"analytics\s*=\s*false", (project / ".dvc" / "config").read_text())


def test_the_root_project_does_not_see_system_b():
    """System B is a DVC subproject: the root's stages, params and metrics never include its files."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        stage_files = {Path(s.path).resolve() for s in repo.index.stages}
    assert stage_files == {(ROOT / "dvc.yaml").resolve()}, stage_files

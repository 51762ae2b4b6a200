"""Pipeline consistency: dvc.yaml vs stage scripts vs params.yaml (STYLE habit 6)."""
import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "diffpipe"


def diffpipe_imports(path: Path) -> set[str]:
    """Module names of `diffpipe` imported by a file (absolute `diffpipe.x` and relative `.x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.module and (node.module == "diffpipe" or node.module.startswith("diffpipe.")) or node.level:
                base = (node.module or "").removeprefix("diffpipe").lstrip(".")
                if base:
                    found.add(base.split(".")[0])
                else:
                    found.update(a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("diffpipe."))
    return found


def transitive_modules(script: Path) -> set[str]:
    todo, seen = list(diffpipe_imports(script)), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(diffpipe_imports(PACKAGE / f"{mod}.py"))
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


def stages(path: Path = ROOT / "dvc.yaml") -> dict:
    return load_pipeline(path)


def test_every_imported_src_module_is_a_stage_dependency():
    for pipeline in PIPELINES:
        base = pipeline.parent
        for name, stage in stages(pipeline).items():
            script = re.search(r"\S*stages/\w+\.py", stage["cmd"]).group(0)
            deps = {(base / d).resolve() for d in stage["deps"] if isinstance(d, str)}
            where = f"{pipeline.relative_to(ROOT)} stage {name}"
            assert (base / script).resolve() in deps, f"{where}: its script {script} is not a dependency"
            needed = {PACKAGE / f"{m}.py" for m in transitive_modules((base / script).resolve())}
            missing = sorted(str(m.relative_to(ROOT)) for m in needed - deps)
            assert not missing, f"{where} imports {missing} but does not list them in deps"


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: str(p.relative_to(ROOT)))
def test_stage_params_exist_in_params_yaml(pipeline):
    params = yaml.safe_load((pipeline.parent / "params.yaml").read_text())
    for name, stage in stages(pipeline).items():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else None
            if keys is None or "${" in keys:  # templated keys are checked by dvc itself
                continue
            node = params
            for part in keys.split("."):
                assert part in node, f"stage {name} lists param {keys}, which params.yaml lacks"
                node = node[part]


def test_scripts_take_paths_only_from_the_command_line():
    """No stage script hard-codes a data/, models/, metrics/ or plots/ path (paths live in dvc.yaml)."""
    for script in (ROOT / "stages").glob("*.py"):
        text = script.read_text()
        assert not re.search(r"[\"'](data|models|metrics|plots|samples)/", text), f"{script.name} hard-codes a path"


def test_analytics_are_off_in_committed_dvc_config():
    assert re.search(r"analytics\s*=\s*false", (ROOT / ".dvc" / "config").read_text())

"""Pipeline consistency: dvc.yaml vs stage scripts vs params.yaml (STYLE habit 6)."""
import ast
import re
from pathlib import Path

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


def stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_imported_src_module_is_a_stage_dependency():
    for name, stage in stages().items():
        script = re.search(r"stages/\w+\.py", stage["cmd"]).group(0)
        deps = {d for d in stage["deps"] if isinstance(d, str)}
        assert script in deps, f"stage {name}: its script {script} is not a dependency"
        needed = {f"src/diffpipe/{m}.py" for m in transitive_modules(ROOT / script)}
        missing = sorted(needed - deps)
        assert not missing, f"stage {name} imports {missing} but does not list them in deps"


def test_stage_params_exist_in_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in stages().items():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else None
            if keys is None:
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

"""The environment is pinned: every direct dependency is pinned (==) in constraints.txt, which the README
and CI install with."""
import re
import tomllib

from helpers import ROOT


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            out[normalise(name)] = version
    return out


def test_every_direct_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    names = {normalise(re.match(r"[A-Za-z0-9_.-]+", d).group(0)) for d in direct}
    pinned = pins()
    assert names - set(pinned) == set(), f"unpinned direct dependencies: {sorted(names - set(pinned))}"
    assert pinned["torch"] == "2.13.0" and pinned["torchvision"] == "0.28.0"


def test_install_commands_use_the_constraints():
    for text in ((ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()):
        installs = re.findall(r"pip install[^\n`]*", text)
        project_installs = [i for i in installs if "-e ." in i or '-e ".' in i]
        assert project_installs and all("-c constraints.txt" in i for i in project_installs), project_installs

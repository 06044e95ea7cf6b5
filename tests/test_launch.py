"""Launch paths: Binder builds a CPU-only environment; Colab installs from the one repository
setting. (The CI stage scripts/test_wheel.sh runs chapters from the installed wheel alone.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def repository_setting() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_installs_from_the_repository_setting(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    first = "".join(cells[0]["source"])
    installs = re.findall(r'pip install -q "pruningrl @ git\+([^"]+)"', first)
    assert installs == [repository_setting()], (
        f"{path.name}: the Colab install line must name _config.yml's repository.url; "
        "run scripts/set_repository.py URL to set both")


def test_binder_installs_a_cpu_torch_before_the_library():
    binder = ROOT / "binder"
    steps = [line.strip() for line in (binder / "postBuild").read_text().splitlines()
             if line.strip().startswith("pip install")]
    assert steps, "binder/postBuild installs nothing"
    torch_step, library_step = steps[0], steps[-1]
    assert "torch" in torch_step and "download.pytorch.org/whl/cpu" in torch_step
    assert re.search(r'-e "?\.\[book\]"?', library_step), library_step
    # repo2docker installs these before postBuild; none may bring a (CUDA) torch of its own
    assert not any((binder / name).exists() for name in
                   ("requirements.txt", "environment.yml", "setup.py", "Pipfile"))
    assert (binder / "runtime.txt").read_text().startswith("python-3.")
    assert "libosmesa6" in (binder / "apt.txt").read_text().split()
    assert "MUJOCO_GL" in (binder / "start").read_text()


def test_the_readers_requirements_stay_loose():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text()
             .splitlines()]
    pinned = [line for line in lines if "==" in line or "--index-url" in line]
    assert not pinned, f"requirements.txt should list floors, not pins: {pinned}"


def test_the_wheel_carries_the_shipped_agents_and_results():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["pruningrl"]
    package = ROOT / "pruningrl"
    for folder in ("agents", "results", "grids"):
        files = [p for p in (package / folder).rglob("*") if p.is_file()]
        assert files, f"no files in pruningrl/{folder}"
        covered = [p for p in files if any(p.relative_to(package).match(g) or
                                           _recursive_match(p.relative_to(package), g)
                                           for g in globs)]
        assert covered == files, f"pruningrl/{folder}: files outside package-data"


def _recursive_match(relative: Path, pattern: str) -> bool:
    head, _, tail = pattern.partition("/**/")
    return bool(tail) and relative.parts[0] == head and relative.match(tail)

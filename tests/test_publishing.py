"""The publishing workflow: valid against GitHub's workflow schema, and it builds the book with
the README's command and publishes the folder that command writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BOOK = ROOT / ".github" / "workflows" / "book.yml"


def _check_jsonschema() -> str:
    tool = Path(sys.executable).with_name("check-jsonschema")
    found = str(tool) if tool.is_file() else shutil.which("check-jsonschema")
    if found is None:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    return found


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_githubs_schema(workflow: Path):
    done = subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.github-workflows",
                           str(workflow)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_can_fail(tmp_path: Path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  build:\n    steps: 3\n")
    done = subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.github-workflows",
                           str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


def test_book_workflow_builds_with_the_readme_command_and_publishes_its_output():
    readme = (ROOT / "README.md").read_text()
    workflow = yaml.safe_load(BOOK.read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    runs = [s["run"] for s in steps if "run" in s]
    build = next(r for r in runs if "build_book" in r)
    assert build.strip() in readme, "the workflow builds the book otherwise than the README"
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in steps)

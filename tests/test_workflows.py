"""The GitHub workflows are valid YAML by yamllint's rules, CI runs the README's test command
on every Python the package supports, and the release is checked before it is published."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# GitHub's `on:` key is a YAML 1.1 boolean to yamllint's truthy rule; lines up to 110 long
CONFIG = (
    "{extends: default, rules: {truthy: {check-keys: false}, line-length: {max: 110}, "
    "document-start: disable}}"
)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_the_workflow_passes_yamllint(workflow: Path) -> None:
    linted = subprocess.run(
        [sys.executable, "-m", "yamllint", "-d", CONFIG, str(workflow)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_ci_runs_the_readmes_test_command_on_every_supported_python() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"```sh\n(bash scripts/test)\n```", readme)
    assert command is not None, "the README shows the test command in a sh block"
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert f"run: {command.group(1)}\n" in ci
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(f"exec {command.group(1)}")
    pyproject = (ROOT / "pyproject.toml").read_text()
    supported = re.findall(r"Programming Language :: Python :: (3\.\d+)\"", pyproject)
    assert supported and all(f'"{v}"' in ci for v in supported), supported


def test_the_release_checks_before_it_publishes() -> None:
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert 'tags: ["v*"]' in release
    assert "twine check --strict" in release
    assert "id-token: write" in release  # trusted publishing, no stored token
    assert release.index("twine check") < release.index("gh-action-pypi-publish")

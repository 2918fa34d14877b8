"""Every ```toml and ```json block in README.md and docs/*.md is valid: TOML loads through
`load_settings` (with a dummy key for every provider), JSON through json.loads. A block that
is not mini-llm configuration is marked with `<!-- not-config -->` on the line before it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from mini_llm.config import load_settings
from mini_llm.providers.presets import PRESETS, env_prefix

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(<!-- not-config -->\n)?```(toml|json)\n(.*?)^```", re.M | re.S)


def snippets() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1):
                continue
            line = text.count("\n", 0, match.start(2)) + 1
            found.append((f"{doc.name}:{line}", match.group(2), match.group(3)))
    return found


SNIPPETS = snippets()


def test_the_docs_have_configuration_snippets() -> None:
    assert len([s for s in SNIPPETS if s[1] == "toml"]) >= 2


@pytest.mark.parametrize(("where", "language", "text"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_snippet_is_valid(where: str, language: str, text: str, tmp_path: Path) -> None:
    if language == "json":
        json.loads(text)
        return
    entries = tomllib.loads(text).get("providers", {})
    # the clouds (`type`, or their presets) take their own credentials, which no dummy key is
    clouds = {n for n, e in entries.items() if "type" in e} | {"azure", "bedrock", "vertex"}
    providers = {*PRESETS, *entries} - clouds
    env = {f"{env_prefix(name)}_API_KEY": "dummy-key-for-docs" for name in providers}
    config = tmp_path / "mini-llm.toml"
    config.write_text(text, encoding="utf-8")
    load_settings(env=env, config_path=str(config))


def test_the_readme_lists_every_settings_variable() -> None:
    from mini_llm.settings_table import ROWS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [row.env for row in ROWS if f"`{row.env}`" not in readme]
    assert missing == []

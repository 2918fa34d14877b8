"""The documentation stays true: its relative links lead to files of the repository, and it
names no endpoint or service the code does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mini_llm.gateway.app import build_app

from .harness import gateway_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), the target up to a space or ")"; [label]: target
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")


PATH_IN_CODE = re.compile(r"`(\.{1,2}/[^`\s]+)`")  # `../bench/run.py`: a path, even unlinked


def relative_links(text: str) -> list[str]:
    """Relative link targets, and paths written as `./x` or `../x` in inline code."""
    unfenced = FENCE.sub("", text)
    prose = CODE.sub("", unfenced)  # links inside code are not links
    targets = INLINE.findall(prose) + REFERENCE.findall(prose) + PATH_IN_CODE.findall(unfenced)
    return [t for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|#", t)]


def test_the_link_finder_finds_links_and_skips_code() -> None:
    text = (
        'See [a](docs/A.md#part), ![img](../x.png "title") and [web](https://example.com).\n'
        "[ref]: ../../outside.md\n"
        "`[not](a-link.md)`, `gateway.json`, `../../shared/BENCH.md`\n"
        "```md\n[nor](this.md)\n```\n[anchor](#here)\n"
    )
    assert relative_links(text) == [
        "docs/A.md#part",
        "../x.png",
        "../../outside.md",
        "../../shared/BENCH.md",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_inside_the_repository(doc: Path) -> None:
    for link in relative_links(doc.read_text(encoding="utf-8")):
        path = link.split("#", 1)[0].split("?", 1)[0]
        target = (doc.parent / path).resolve()
        assert target.is_relative_to(ROOT), f"{doc.name}: {link} points outside the repository"
        assert target.exists(), f"{doc.name}: {link} does not exist"


def test_readme_claims_only_endpoints_the_gateway_has() -> None:
    app = build_app(gateway_settings())
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    claimed = set(re.findall(r"^\| `(GET|POST) (/[^`]*)`", readme, re.MULTILINE))
    assert claimed, "the README's HTTP API table was not found"
    for method, path in claimed:
        assert (method, path) in routes, f"README names {method} {path}, which is not routed"
    if ("POST", "/v1/embeddings") not in routes:
        assert "text-embedding" not in readme, "README routes embedding models; none is served"


def test_docs_name_no_state_backend_the_code_lacks() -> None:
    """No doc may say state is shared through Redis while no module uses a Redis client
    (naming it as what a future backend would be is fine). `state/redis.py` is that module."""
    uses_redis = re.compile(r"^\s*(?:import|from)\s+(?:redis|aioredis)\b", re.MULTILINE)
    sources = (p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py"))
    if any(uses_redis.search(source) for source in sources):
        assert (ROOT / "src/mini_llm/state/redis.py").exists()
        return
    claim = re.compile(r"(?:through|via|in|with)\s+redis\b", re.IGNORECASE)
    for doc in DOCS:
        found = claim.search(doc.read_text(encoding="utf-8"))
        assert found is None, f"{doc.name}: {found.group(0) if found else ''}"

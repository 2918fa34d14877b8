from __future__ import annotations

import pytest

from mini_llm.config import load_settings
from mini_llm.errors import ModelNotFoundError
from mini_llm.routing.keys import KeyPool
from mini_llm.routing.models import detect_provider, resolve_name
from mini_llm.routing.provider import build_providers
from mini_llm.routing.router import Router
from mini_llm.state import MemoryState
from mini_llm.upstream import HttpTransport

PROVIDERS = {"openai", "mock", "groq", "ollama"}


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-mini", "openai"),
        ("gpt-4.1", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("o1-mini", "openai"),
        ("o3", "openai"),
        ("o4-mini", "openai"),
        ("text-embedding-3-small", "openai"),
        ("claude-sonnet-4-5", "anthropic"),
        ("gemini-2.5-pro", "gemini"),
        ("llama3.2", None),
        ("mistral-large", None),
    ],
)
def test_detection(model: str, provider: str | None) -> None:
    assert detect_provider(model) == provider


def test_resolve_name() -> None:
    aliases = {"fast": "openai/gpt-4o-mini", "quick": "fast", "a": "b", "b": "a", "bare": "gpt-4o"}
    assert resolve_name("fast", aliases, PROVIDERS) == ("openai", "gpt-4o-mini")
    assert resolve_name("quick", aliases, PROVIDERS) == ("openai", "gpt-4o-mini")
    assert resolve_name("bare", aliases, PROVIDERS) == ("openai", "gpt-4o")
    assert resolve_name("a", aliases, PROVIDERS) is None
    assert resolve_name("groq/llama-3.3-70b", aliases, PROVIDERS) == ("groq", "llama-3.3-70b")
    # everything after the first slash is the upstream model
    assert resolve_name("ollama/library/llama:8b", aliases, PROVIDERS) == (
        "ollama",
        "library/llama:8b",
    )
    assert resolve_name("meta-llama/Llama-3", aliases, PROVIDERS) is None
    assert resolve_name("openai/", aliases, PROVIDERS) is None
    assert resolve_name("unknown", aliases, PROVIDERS) is None


def make_router(env: dict[str, str]) -> Router:
    settings = load_settings(env=env)
    state = MemoryState()
    providers = build_providers(settings.providers, HttpTransport(settings.timeouts, 4, "t"), state)
    return Router(settings.aliases, providers, state=state)


def test_router_resolves_and_caches() -> None:
    router = make_router({"MINI_LLM_MODEL_ALIASES": '{"fast": "openai/gpt-4o-mini"}'})
    target = router.route("fast").primary
    assert (target.provider.name, target.model) == ("openai", "gpt-4o-mini")
    assert router.route("fast").primary is target
    assert router.route("mock/echo").primary.provider.name == "mock"


def test_router_not_found_lists_configuration() -> None:
    router = make_router(
        {"MINI_LLM_MODEL_ALIASES": '{"fast": "mock/echo"}', "GROQ_API_KEY": "gsk_abcdefgh"}
    )
    with pytest.raises(ModelNotFoundError) as info:
        router.route("nothing")
    message = info.value.message
    assert "Configured providers: groq, mock." in message
    assert "Aliases: fast." in message
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    with pytest.raises(ModelNotFoundError, match="'nowhere/model' does not exist"):
        router.route("nowhere/model")


def test_key_pool_round_robin_and_repr() -> None:
    pool = KeyPool(["k-1111", "k-2222", "k-3333"], "p")
    got = [pool.acquire() for _ in range(7)]
    assert [e.key for e in got if e is not None] == [
        "k-1111",
        "k-2222",
        "k-3333",
        "k-1111",
        "k-2222",
        "k-3333",
        "k-1111",
    ]
    first = got[0]
    assert first is not None
    assert first.credential.secret == "k-1111"
    assert "k-11" not in repr(first)
    assert KeyPool([], "p").acquire() is None

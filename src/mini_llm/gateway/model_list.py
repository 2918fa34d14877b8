"""`GET /v1/models`: every model name a client can send, as OpenAI `model` objects. Pure.

Built once at start-up from the settings and what each provider offers:

- deployments (`owned_by: "deployment"`, with their `targets`), chains (`owned_by: "alias"`,
  with the `chain` tried in order) and aliases (`owned_by: "alias"`, with their `target`),
  in the router's order of precedence for a name that is more than one;
- each provider's models: those its configuration lists, and those it answers by itself
  (the mock's), as `provider/model`;
- every other name the routing tables mention that routes: the targets of aliases, chains
  and deployments, names with fallbacks and their fallbacks, `[models."..."]` overrides.

A name with fallbacks says so (`fallbacks`). Every entry says what it can be asked
(`capabilities`: `["chat"]`, `["embeddings"]`), from the name of the model it reaches first.
Names a client makes up (`openai/<anything>`) route too but cannot be listed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ..routing.models import model_capabilities, resolve_name

if TYPE_CHECKING:
    from ..config import Settings
    from ..routing.provider import Provider

__all__ = ["build_model_list", "models_by_id", "offered_models"]


def offered_models(providers: Mapping[str, Provider]) -> dict[str, tuple[str, ...]]:
    """Each provider's models: those its configuration lists, then those its transport
    answers by itself (a transport with a `models` attribute, like the mock's)."""
    offered: dict[str, tuple[str, ...]] = {}
    for name, provider in providers.items():
        builtin: Sequence[str] = getattr(provider.transport, "models", ())
        models = tuple(dict.fromkeys((*provider.config.models, *builtin)))
        if models:
            offered[name] = models
    return offered


def build_model_list(
    settings: Settings, offered: Mapping[str, Sequence[str]], created: int
) -> list[dict[str, Any]]:
    """The `data` of `GET /v1/models`, each name once."""
    providers = settings.providers
    aliases = settings.aliases
    listed: dict[str, dict[str, Any]] = {}

    def add(name: str, owned_by: str, **extra: Any) -> None:
        if name not in listed:
            entry = {"id": name, "object": "model", "created": created, "owned_by": owned_by}
            capabilities = list(model_capabilities(_first_model(name, settings)))
            listed[name] = {**entry, **extra, "capabilities": capabilities}

    for name, deployment in settings.deployments.items():
        add(name, "deployment", targets=[model for model, _ in deployment.targets])
    for name, chain in settings.chains.items():
        add(name, "alias", chain=list(chain))
    for name, target in aliases.items():
        add(name, "alias", target=target)
    for provider, models in offered.items():
        for model in models:
            add(f"{provider}/{model}", provider)
    for name in _mentioned(settings):
        resolved = resolve_name(name, aliases, providers)
        if resolved is not None and resolved[0] in providers:
            add(name, resolved[0])

    for name, fallbacks in settings.fallbacks.items():
        if name in listed:
            listed[name]["fallbacks"] = list(fallbacks)
    for name, deployment in settings.deployments.items():
        if deployment.fallbacks:
            listed[name]["fallbacks"] = [
                *deployment.fallbacks,
                *listed[name].get("fallbacks", ()),
            ]
    return list(listed.values())


def _first_model(name: str, settings: Settings) -> str:
    """The model a name reaches first: aliases, chains and deployments followed."""
    for _ in range(16):
        if name in settings.deployments and settings.deployments[name].targets:
            name = settings.deployments[name].targets[0][0]
        elif settings.chains.get(name):
            name = settings.chains[name][0]
        elif name in settings.aliases:
            name = settings.aliases[name]
        else:
            break
    return name


def _mentioned(settings: Settings) -> Iterable[str]:
    """Every model name the routing tables mention, in the order they do."""
    yield from settings.aliases.values()
    for chain in settings.chains.values():
        yield from chain
    for deployment in settings.deployments.values():
        yield from (model for model, _ in deployment.targets)
        yield from deployment.fallbacks
    for name, fallbacks in settings.fallbacks.items():
        yield name
        yield from fallbacks
    yield from settings.model_overrides


def models_by_id(models_body: bytes) -> dict[str, bytes]:
    """Each listed model's JSON by its id, from the encoded list (for `GET /v1/models/{id}`)."""
    data: Collection[dict[str, Any]] = msgspec.json.decode(models_body)["data"]
    return {entry["id"]: msgspec.json.encode(entry) for entry in data}

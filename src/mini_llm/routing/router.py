"""Router: a request's model name to the provider and upstream model that serve it."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ModelNotFoundError
from ..providers.base import Provider
from .models import resolve_name

__all__ = ["Router", "Target"]

_CACHE_LIMIT = 4096


class Target:
    __slots__ = ("model", "provider")

    def __init__(self, provider: Provider, model: str) -> None:
        self.provider = provider
        self.model = model

    def __repr__(self) -> str:
        return f"Target({self.provider.name}/{self.model})"


class Router:
    """Resolves names once and remembers them; aliases are checked at start-up."""

    def __init__(self, aliases: Mapping[str, str], providers: Mapping[str, Provider]) -> None:
        self._aliases = dict(aliases)
        self._providers = dict(providers)
        self._cache: dict[str, Target] = {}

    def resolve(self, name: str) -> Target:
        target = self._cache.get(name)
        if target is not None:
            return target
        resolved = resolve_name(name, self._aliases, self._providers)
        if resolved is None:
            raise ModelNotFoundError(self._not_found(name), param="model")
        provider_name, model = resolved
        provider = self._providers.get(provider_name)
        if provider is None:
            raise ModelNotFoundError(
                f"The model '{name}' belongs to provider '{provider_name}', which this gateway "
                f"does not have. {self._available()}",
                param="model",
            )
        target = Target(provider, model)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[name] = target
        return target

    def _available(self) -> str:
        configured = sorted(
            p.name for p in self._providers.values() if p.config.explicit or p.name == "mock"
        )
        builtin = sorted(set(self._providers) - set(configured))
        text = f"Configured providers: {', '.join(configured)}."
        if builtin:
            text += f" Other built-in providers: {', '.join(builtin)}."
        if self._aliases:
            text += f" Aliases: {', '.join(sorted(self._aliases))}."
        return text

    def _not_found(self, name: str) -> str:
        return (
            f"The model '{name}' does not exist or is not configured. Address a model as "
            f"provider/model (for example mock/echo or openai/gpt-4o-mini) or use an alias. "
            + self._available()
        )

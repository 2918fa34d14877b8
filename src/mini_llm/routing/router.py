"""Router: a request's model name to the ordered targets that may serve it.

A `Route` is a list of `Group`s tried in order (the first, then its fallbacks). A group holds
one target, or several deployments of one public model name balanced round-robin (weighted)
or by least requests in flight; the balancer picks which member goes first and the others
follow before the route moves to its fallbacks. Routes are built once per name and cached;
`Target`s are shared, so in-flight counts are per upstream model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError, ModelNotFoundError
from ..formats import Format, Operation
from ..providers.base import UpstreamModel, native_format
from ..resilience import Overrides, RetryPolicy, Timeouts
from ..state import MemoryState, StateBackend
from .keys import KeyEntry
from .models import resolve_name
from .provider import Provider

if TYPE_CHECKING:
    from ..config import Settings
    from .policies import Deployment

__all__ = ["MODEL_NAME", "Group", "Route", "Router", "Target", "check_model_name"]

log = logging.getLogger("mini_llm.keys")

_CACHE_LIMIT = 4096
_MAX_DEPTH = 16

# What a model name may hold: it ends up in upstream URLs and in response headers.
MODEL_NAME = re.compile(r"[A-Za-z0-9._:@+/-]{1,256}")


def check_model_name(name: str) -> None:
    """A 400 for a name that could change an upstream path, query or header (`..`, `?`, `#`,
    `%`, CR/LF, spaces…), before anything is resolved or sent."""
    if MODEL_NAME.fullmatch(name) and not any(part in ("", ".", "..") for part in name.split("/")):
        return
    shown = name[:80].encode("unicode_escape").decode("ascii")
    raise InvalidRequestError(
        f"Invalid model name '{shown}': a model name holds letters, digits and . _ : @ + / - "
        "(at most 256), with no empty, '.' or '..' part between slashes.",
        param="model",
        code="invalid_model",
    )


class Target:
    """One upstream model at one provider, with its effective timeouts and retry policy."""

    __slots__ = (
        "busy",
        "label",
        "model",
        "provider",
        "refused",
        "retries",
        "timeouts",
        "upstream",
        "wire",
    )

    def __init__(
        self,
        provider: Provider,
        model: str,
        timeouts: Timeouts | None = None,
        retries: RetryPolicy | None = None,
        state: StateBackend | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.label = f"{provider.name}/{model}"
        self.wire = provider.wire_for(model)
        """The wire format this model is spoken to in (Vertex: by the model's publisher)."""
        base_url = provider.config.base_url
        headers = (
            provider.headers
            if self.wire is provider.wire
            else self.wire.headers(dict(provider.config.headers))
        )
        self.upstream = UpstreamModel(provider.name, base_url, model, headers)
        self.timeouts = timeouts or Timeouts()
        self.retries = retries or RetryPolicy()
        self.busy = (state or MemoryState()).counter("in_flight/" + self.label)
        """Upstream calls under way to this model (the balancer's least-in-flight reads it)."""
        self.refused: set[KeyEntry] = set()
        """Keys the upstream refused (403) for this model; other models may still use them."""

    @property
    def in_flight(self) -> int:
        return self.busy.value

    def refuse(self, key: KeyEntry) -> None:
        if key not in self.refused:
            self.refused.add(key)
            log.warning(
                "%s key %s was refused (HTTP 403) for %s", self.provider.name, key.hint, self.label
            )

    def __repr__(self) -> str:
        return f"Target({self.label})"


class Group:
    """Targets of one public name; `order()` says who goes first."""

    __slots__ = ("_current", "_next", "_total", "_weights", "strategy", "targets")

    def __init__(
        self, targets: tuple[Target, ...], weights: tuple[float, ...], strategy: str
    ) -> None:
        self.targets = targets
        self.strategy = strategy
        self._weights = weights
        self._total = sum(weights)
        self._current = [0.0] * len(targets)
        self._next = 0

    def order(self) -> tuple[Target, ...]:
        targets = self.targets
        if len(targets) == 1:
            return targets
        first = self._pick()
        return (targets[first], *targets[:first], *targets[first + 1 :])

    def _pick(self) -> int:
        count = len(self.targets)
        if self.strategy == "least-in-flight":
            start = self._next
            self._next = (start + 1) % count
            best = start
            for step in range(1, count):
                i = (start + step) % count
                if self.targets[i].busy.value < self.targets[best].busy.value:
                    best = i
            return best
        # smooth weighted round-robin: spreads picks evenly in proportion to the weights
        current = self._current
        best = 0
        for i, weight in enumerate(self._weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return best


class Route:
    __slots__ = ("_serving", "as_is", "formats", "groups", "name")

    def __init__(self, name: str, groups: tuple[Group, ...]) -> None:
        self.name = name
        self.groups = groups
        self.formats = frozenset(t.wire.format for g in groups for t in g.targets)
        """The wire formats of every target: whether a request may need translating."""
        self._serving: dict[tuple[Operation, Format], Route | None] = {}
        self.as_is = False
        """On a route made by `serving`: whether every target takes the body as it is (then
        the canonical form is never needed)."""

    @property
    def primary(self) -> Target:
        return self.groups[0].targets[0]

    @property
    def budget(self) -> float:
        return self.primary.retries.budget

    def serving(self, operation: Operation, fmt: Format) -> Route | None:
        """This route without the targets that cannot serve `operation` for a body in `fmt`
        (an endpoint that takes no canonical body serves only its own format); None when no
        target can. Worked out once per route, operation and format."""
        key = (operation, fmt)
        if key in self._serving:
            return self._serving[key]
        groups = []
        for group in self.groups:
            kept = tuple(t for t in group.targets if _serves(t, operation, fmt))
            if kept == group.targets:
                groups.append(group)
            elif kept:
                groups.append(Group(kept, (1.0,) * len(kept), group.strategy))
        route = Route(self.name, tuple(groups)) if groups else None
        if route is not None:
            route.as_is = all(
                _takes_as_is(t, operation, fmt) for g in route.groups for t in g.targets
            )
        self._serving[key] = route
        return route


def _serves(target: Target, operation: Operation, fmt: Format) -> bool:
    wire = target.wire
    endpoint = wire.endpoints.get(operation)
    return endpoint is not None and (endpoint.translates or native_format(wire, endpoint) is fmt)


def _takes_as_is(target: Target, operation: Operation, fmt: Format) -> bool:
    wire = target.wire
    return native_format(wire, wire.endpoints[operation]) is fmt


class Router:
    """Resolves names once and remembers them; the configuration was checked at start-up."""

    def __init__(
        self,
        aliases: Mapping[str, str],
        providers: Mapping[str, Provider],
        settings: Settings | None = None,
        state: StateBackend | None = None,
    ) -> None:
        self._state = state if state is not None else MemoryState()
        self._aliases = dict(aliases)
        self._providers = dict(providers)
        self._chains: Mapping[str, tuple[str, ...]] = settings.chains if settings else {}
        self._fallbacks: Mapping[str, tuple[str, ...]] = settings.fallbacks if settings else {}
        self._deployments: Mapping[str, Deployment] = settings.deployments if settings else {}
        self._model_overrides: Mapping[str, Overrides] = (
            settings.model_overrides if settings else {}
        )
        self._timeouts = settings.timeouts if settings else Timeouts()
        self._retries = settings.retries if settings else RetryPolicy()
        self._policies: dict[str, tuple[Timeouts, RetryPolicy]] = {}
        # Names the configuration defines keep their routes and targets (balancer state,
        # in-flight counts) for the life of the process; names clients make up on the fly
        # ("openai/<anything>") live in a bounded cache.
        self._configured = {*self._aliases, *self._chains, *self._deployments, *self._fallbacks}
        self._fixed_routes: dict[str, Route] = {}
        self._fixed_targets: dict[tuple[str, str], Target] = {}
        self._routes: dict[str, Route] = {}
        self._targets: dict[tuple[str, str], Target] = {}

    def route(self, name: str) -> Route:
        route = self._fixed_routes.get(name) or self._routes.get(name)
        if route is not None:
            return route
        check_model_name(name)
        fixed = name in self._configured
        created: dict[tuple[str, str], Target] = {}
        groups = self._dedupe(self._groups(name, 0, set(), created))
        route = Route(name, groups)
        if fixed:
            self._fixed_routes[name] = route
            self._fixed_targets.update(created)
        else:
            if len(self._routes) >= _CACHE_LIMIT:
                self._routes.clear()
                self._targets.clear()
            self._routes[name] = route
            self._targets.update(created)
        return route

    def in_flight(self) -> int:
        """Upstream calls under way right now, over every target."""
        return sum(t.busy.value for t in self.targets())

    def targets(self) -> list[Target]:
        """Every target built so far."""
        return [*self._fixed_targets.values(), *self._targets.values()]

    def refusals(self) -> dict[str, list[str]]:
        """Keys refused with 403 per upstream model, by their last 4 characters."""
        return {t.label: sorted(k.hint for k in t.refused) for t in self.targets() if t.refused}

    def _target(
        self, provider: Provider, model: str, created: dict[tuple[str, str], Target]
    ) -> Target:
        key = (provider.name, model)
        target = self._fixed_targets.get(key) or self._targets.get(key) or created.get(key)
        if target is None:
            policies = self._policies.get(provider.name)
            if policies is None:
                policies = self._policies[provider.name] = provider.config.overrides.apply(
                    self._timeouts, self._retries
                )
            timeouts, retries = policies
            override = self._model_overrides.get(f"{provider.name}/{model}")
            if override is not None:
                timeouts, retries = override.apply(timeouts, retries)
            target = created[key] = Target(provider, model, timeouts, retries, self._state)
        return target

    def _single(self, name: str, created: dict[tuple[str, str], Target]) -> Target:
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
        return self._target(provider, model, created)

    def _groups(
        self,
        name: str,
        depth: int,
        expanded: set[str],
        created: dict[tuple[str, str], Target],
    ) -> list[Group]:
        """The groups a name stands for, its fallbacks after them. `expanded` holds the names
        whose fallbacks are already in the route, so fallbacks naming each other end there."""
        if depth > _MAX_DEPTH:
            raise ModelNotFoundError(f"The model '{name}' is defined in a cycle.", param="model")
        expanded.add(name)
        groups: list[Group]
        fallbacks = self._fallbacks.get(name, ())
        deployment = self._deployments.get(name)
        if deployment is not None:
            members = tuple(self._single(model, created) for model, _ in deployment.targets)
            weights = tuple(weight for _, weight in deployment.targets)
            groups = [Group(members, weights, deployment.strategy)]
            fallbacks = (*deployment.fallbacks, *fallbacks)
        elif name in self._chains:
            groups = [
                g
                for model in self._chains[name]
                for g in self._groups(model, depth + 1, expanded, created)
            ]
        elif name in self._aliases:
            groups = self._groups(self._aliases[name], depth + 1, expanded, created)
        else:
            groups = [Group((self._single(name, created),), (1.0,), "round-robin")]
        for fallback in fallbacks:
            if fallback not in expanded:
                groups += self._groups(fallback, depth + 1, expanded, created)
        return groups

    @staticmethod
    def _dedupe(groups: list[Group]) -> tuple[Group, ...]:
        """A target tried once already is not tried again further down the route."""
        seen: set[int] = set()
        result: list[Group] = []
        for group in groups:
            fresh = tuple(t for t in group.targets if id(t) not in seen)
            seen.update(id(t) for t in fresh)
            if len(fresh) == len(group.targets):
                result.append(group)
            elif fresh:
                result.append(Group(fresh, (1.0,) * len(fresh), group.strategy))
        return tuple(result)

    def _available(self) -> str:
        configured = sorted(
            p.name for p in self._providers.values() if p.config.explicit or p.name == "mock"
        )
        builtin = sorted(set(self._providers) - set(configured))
        text = f"Configured providers: {', '.join(configured)}."
        if builtin:
            text += f" Other built-in providers: {', '.join(builtin)}."
        names = sorted({*self._aliases, *self._chains, *self._deployments})
        if names:
            text += f" Aliases: {', '.join(names)}."
        return text

    def _not_found(self, name: str) -> str:
        return (
            f"The model '{name}' does not exist or is not configured. Address a model as "
            f"provider/model (for example mock/echo or openai/gpt-4o-mini) or use an alias. "
            + self._available()
        )

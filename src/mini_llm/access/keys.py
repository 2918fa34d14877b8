"""Gateway keys: what one is, how it is made, hashed and matched.

A key is `mk-` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: with
that much entropy a slow hash buys nothing, and a lookup stays one dict access. A key is
named in logs and listings by its id and its last 4 characters, never shown again after it
was created. A signing secret (`ms-…`) is kept as it is: verifying an HMAC needs it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

__all__ = [
    "BUDGET_PERIODS",
    "FIELDS",
    "GatewayKey",
    "KeyFieldError",
    "hash_key",
    "new_id",
    "new_key",
    "new_signing_secret",
    "parse_fields",
]

PREFIX = "mk-"
BUDGET_PERIODS = ("day", "week", "month", "total")
FIELDS = (
    "name",
    "owner",
    "team",
    "metadata",
    "models",
    "rpm",
    "tpm",
    "max_concurrency",
    "budget_usd",
    "budget_period",
    "expires_at",
    "enabled",
)


class KeyFieldError(ValueError):
    """A field given to create or update a key is not valid (the message says which)."""


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_signing_secret() -> str:
    return "ms-" + secrets.token_urlsafe(32)


def new_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class GatewayKey:
    id: str
    hash: str
    last4: str
    name: str
    owner: str = ""
    team: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    budget_usd: float | None = None
    budget_period: str = "month"
    expires_at: float | None = None
    enabled: bool = True
    signing_secret: str | None = None
    previous_hash: str | None = None
    """The secret before the last rotation, accepted until `previous_until`."""
    previous_until: float = 0.0
    created_at: float = 0.0
    revoked: bool = False

    @property
    def label(self) -> str:
        return f"{self.id} (…{self.last4})"

    def refusal(self, now: float) -> str | None:
        """Why this key may not be used now (None: it may)."""
        if self.revoked:
            return "revoked"
        if not self.enabled:
            return "disabled"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return None

    def allows(self, model: str, aliases: tuple[str, ...] = ()) -> bool:
        """Whether the key may use `model` (or one of the names it resolves to)."""
        if self.models is None:
            return True
        names = (model, *aliases)
        return any(fnmatch.fnmatchcase(n, pattern) for pattern in self.models for n in names)

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it: never its secret nor its hash."""
        return {
            "id": self.id,
            "last4": self.last4,
            "name": self.name,
            "owner": self.owner,
            "team": self.team,
            "metadata": self.metadata,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrency": self.max_concurrency,
            "budget_usd": self.budget_usd,
            "budget_period": self.budget_period,
            "expires_at": _rfc3339(self.expires_at),
            "enabled": self.enabled,
            "signing": self.signing_secret is not None,
            "created_at": _rfc3339(self.created_at),
            "rotated_grace_until": _rfc3339(self.previous_until) if self.previous_hash else None,
        }

    def with_fields(self, fields: dict[str, Any]) -> GatewayKey:
        return replace(self, **fields)


def _rfc3339(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def _limit(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KeyFieldError(f"{name} must be a whole number of at least 1 (or null)")
    return value


_MODEL = re.compile(r"[A-Za-z0-9._:@+/*?\[\]-]+")


def parse_fields(given: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The fields of a create or update request, checked and in `GatewayKey`'s types."""
    out: dict[str, Any] = {}
    unknown = [k for k in given if k not in (*FIELDS, "signing")]
    if unknown:
        raise KeyFieldError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if creating and not isinstance(given.get("name"), str):
        raise KeyFieldError("name is required (a string)")
    for name in ("name", "owner", "team"):
        if name in given:
            value = given[name]
            if not isinstance(value, str) or len(value) > 200 or (name == "name" and not value):
                raise KeyFieldError(f"{name} must be a string of at most 200 characters")
            out[name] = value
    if "metadata" in given:
        if not isinstance(given["metadata"], dict):
            raise KeyFieldError("metadata must be an object")
        out["metadata"] = given["metadata"]
    if "models" in given:
        models = given["models"]
        if models is None:
            out["models"] = None
        elif isinstance(models, list) and all(
            isinstance(m, str) and _MODEL.fullmatch(m) for m in models
        ):
            out["models"] = tuple(models)
        else:
            raise KeyFieldError("models must be a list of model names or globs (or null)")
    for name in ("rpm", "tpm", "max_concurrency"):
        if name in given:
            out[name] = _limit(name, given[name])
    if "budget_usd" in given:
        budget = given["budget_usd"]
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0
        ):
            raise KeyFieldError("budget_usd must be a number of 0 or more (or null)")
        out["budget_usd"] = float(budget) if budget is not None else None
    if "budget_period" in given:
        if given["budget_period"] not in BUDGET_PERIODS:
            raise KeyFieldError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}")
        out["budget_period"] = given["budget_period"]
    if "expires_at" in given:
        out["expires_at"] = _parse_time(given["expires_at"])
    if "enabled" in given:
        if not isinstance(given["enabled"], bool):
            raise KeyFieldError("enabled must be true or false")
        out["enabled"] = given["enabled"]
    if "signing" in given and not isinstance(given["signing"], bool):
        raise KeyFieldError("signing must be true or false")
    return out


def _parse_time(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KeyFieldError("expires_at must be an RFC 3339 time (or null)")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise KeyFieldError(f"expires_at is not an RFC 3339 time: {value!r}") from None
    if at.tzinfo is None:
        raise KeyFieldError("expires_at needs a time zone (Z or +hh:mm)")
    return at.timestamp()


def now() -> float:
    return time.time()

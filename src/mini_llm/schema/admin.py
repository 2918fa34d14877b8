"""The admin API's shapes (`/admin/keys`), for the OpenAPI document (`gateway/openapi.py`).

The keys are what `GatewayKey.public()` and `gateway/admin.py` send; `tests/test_openapi.py`
checks real answers against these schemas, which forbid unknown fields, so that a field added to
one and not the other fails a test.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "CreatedKey",
    "KeyDetail",
    "KeyFields",
    "KeyList",
    "KeyUse",
    "KeyView",
    "RevokedKey",
    "RotateKey",
]

Period = Literal["day", "week", "month", "total"]


class KeyFields(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /admin/keys` (`name` required) and `PATCH /admin/keys/{id}` (any of them)."""

    name: str | None = None
    owner: str | None = None
    team: str | None = None
    metadata: dict[str, Any] | None = None
    models: list[str] | None = None
    """Allowed model names or globs (aliases included); absent or null: every model."""
    rpm: int | None = None
    tpm: int | None = None
    """Input + output tokens a minute."""
    max_concurrency: int | None = None
    budget_usd: float | None = None
    budget_period: Period | None = None
    expires_at: str | None = None
    """RFC 3339."""
    enabled: bool | None = None
    signing: bool | None = None
    """True: a signing secret is made and shown once (`signing_secret`)."""


class RotateKey(msgspec.Struct):
    """`POST /admin/keys/{id}/rotate` (the body may be empty)."""

    grace_seconds: float | None = None
    """How long the old secret stays valid (default: the gateway's rotation grace)."""


class KeyView(msgspec.Struct, forbid_unknown_fields=True):
    """A gateway key as the admin API shows it: never its secret nor its hash."""

    id: str
    last4: str
    name: str
    owner: str
    team: str
    metadata: dict[str, Any]
    models: list[str] | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    budget_usd: float | None
    budget_period: Period
    expires_at: str | None
    enabled: bool
    signing: bool
    created_at: str | None
    rotated_grace_until: str | None


class CreatedKey(KeyView, forbid_unknown_fields=True):
    """`POST /admin/keys` and `POST /admin/keys/{id}/rotate`: the secret, shown this once."""

    key: str
    signing_secret: str | None = None


class KeyUse(msgspec.Struct, forbid_unknown_fields=True):
    """What a key uses now (from the limits' counters)."""

    period: str
    requests_this_minute: int | None = None
    tokens_this_minute: int | None = None
    in_flight: int | None = None
    spend_usd: float | None = None
    """Settled and reserved spend in the budget period."""
    spend_settled_usd: float | None = None
    state: Literal["unreachable"] | None = None
    store: Literal["unreachable"] | None = None


class KeyDetail(KeyView, forbid_unknown_fields=True):
    """`GET /admin/keys/{id}`: the key, what it uses now and what the ledger says it spent."""

    spend_usd: float | None
    """Cost of its requests since `spend_since`, from the usage ledger (null: no ledger)."""
    spend_since: str
    usage: KeyUse | None = None
    requests: int | None = None
    unpriced_requests: int | None = None


class RevokedKey(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    revoked: bool


class KeyList(msgspec.Struct, forbid_unknown_fields=True):
    object: Literal["list"]
    data: list[KeyView]

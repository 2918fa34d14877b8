"""Gateway keys, request signing, limits and budgets (issue #11).

keys.py      GatewayKey, key and secret generation, SHA-256 hashing, field checks
store.py     KeyStore (tables and migrations on the SQL store), KeyCache (the hot path's
             copy, reloaded every 0.5 s, kept through a store outage)
signing.py   HMAC-SHA256 request signatures
limits.py    Limiter: rpm, tpm, concurrency, budgets (priced by usage/prices.py) reserved
             before and settled after
"""

from __future__ import annotations

from .keys import GatewayKey, KeyFieldError, hash_key
from .limits import BudgetExceededError, Limiter, Reservation, UnpricedModelError
from .signing import SignatureError, signature
from .store import KeyCache, KeyStore

__all__ = [
    "BudgetExceededError",
    "GatewayKey",
    "KeyCache",
    "KeyFieldError",
    "KeyStore",
    "Limiter",
    "Reservation",
    "SignatureError",
    "UnpricedModelError",
    "hash_key",
    "signature",
]

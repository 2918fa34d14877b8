"""The price table: USD per million tokens per `provider/model`, and what an answer cost.

The built-in table is a data file shipped in the package (`prices.json`, with its source and
date); `[prices."provider/model"]` in the configuration overrides or extends it, field by
field. A model found nowhere has no price: its cost is None (listed as unpriced), never 0.

How each token kind is billed, `Usage` having already put every provider's figures in one
shape (`input_tokens` excludes cache reads and writes; `output_tokens` includes reasoning):

    input × input + cached_input × cached_input + 5-minute writes × cache_write
    + 1-hour writes × cache_write_1h + (output − reasoning) × output + reasoning × reasoning

A field left out falls back as the providers bill it: cached reads and cache writes at the
input price, 1-hour writes at the (5-minute) write price, reasoning at the output price.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..canonical import Usage

__all__ = ["PRICE_FIELDS", "Price", "PriceTable", "load_builtin", "parse_price_overrides"]

PRICE_FIELDS = (
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "cache_write_per_mtok",
    "cache_write_1h_per_mtok",
    "reasoning_per_mtok",
)
_DATED = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens of each kind (fallbacks already applied)."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    cache_write_1h: float
    reasoning: float

    @classmethod
    def of(cls, fields: Mapping[str, float]) -> Price:
        given = fields["input"]
        out = fields["output"]
        write = fields.get("cache_write", given)
        return cls(
            input=given,
            output=out,
            cached_input=fields.get("cached_input", given),
            cache_write=write,
            cache_write_1h=fields.get("cache_write_1h", write),
            reasoning=fields.get("reasoning", out),
        )

    def cost(self, usage: Usage) -> float:
        """What `usage` cost in USD."""
        one_hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        reasoning = min(usage.reasoning_tokens, usage.output_tokens)
        total = (
            usage.input_tokens * self.input
            + usage.cached_input_tokens * self.cached_input
            + (usage.cache_write_tokens - one_hour) * self.cache_write
            + one_hour * self.cache_write_1h
            + (usage.output_tokens - reasoning) * self.output
            + reasoning * self.reasoning
        )
        return total / 1_000_000


def load_builtin() -> dict[str, Any]:
    """The shipped table: `{"source", "date", "unit", "models": {name: {kind: price}}}`."""
    # beside this module (package data); importlib.resources costs ~30 ms of import
    text = Path(__file__).with_name("prices.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def parse_price_overrides(
    table: Mapping[str, Any], where: str, problems: list[str]
) -> dict[str, dict[str, float]]:
    """`[prices."provider/model"]` tables → `{name: {kind: price}}` (kinds without
    `_per_mtok`); every problem appended."""
    parsed: dict[str, dict[str, float]] = {}
    for name, entry in table.items():
        at = f'{where}."{name}"'
        if "/" not in name:
            problems.append(f"{at}: name a model as provider/model")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{at} must be a table")
            continue
        fields: dict[str, float] = {}
        for key, value in entry.items():
            if key not in PRICE_FIELDS:
                problems.append(f"{at}: unknown key {key!r} (known: {', '.join(PRICE_FIELDS)})")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                problems.append(f"{at}.{key} must be a number of USD, 0 or more, got {value!r}")
            else:
                fields[key.removesuffix("_per_mtok")] = float(value)
        parsed[name] = fields
    return parsed


class PriceTable:
    """Prices by `provider/model`: exact name first, then without a date suffix
    (`-20250929`, `-2024-07-18`, `-latest`)."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, float]] | None = None,
        builtin: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        models = load_builtin()["models"] if builtin is None else builtin
        merged: dict[str, dict[str, float]] = {k: dict(v) for k, v in models.items()}
        for name, fields in (overrides or {}).items():
            merged.setdefault(name, {}).update(fields)
        self.prices: dict[str, Price] = {}
        self.incomplete: list[str] = []
        """Overridden models with no input or output price: unpriced (named by `config check`)."""
        for name, fields in merged.items():
            if "input" in fields and "output" in fields:
                self.prices[name] = Price.of(fields)
            else:
                self.incomplete.append(name)
        self._found: dict[str, Price | None] = {}

    def __contains__(self, label: str) -> bool:
        return self.find(label) is not None

    def find(self, label: str) -> Price | None:
        """The price of `provider/model`, or None."""
        try:
            return self._found[label]
        except KeyError:
            pass
        price = self.prices.get(label)
        if price is None:
            price = self.prices.get(_DATED.sub("", label))
        if len(self._found) < 4096:  # names come from routes; bounded all the same
            self._found[label] = price
        return price

    def cost(self, label: str, usage: Usage) -> float | None:
        price = self.find(label)
        return price.cost(usage) if price is not None else None

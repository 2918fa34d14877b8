"""The key of a request in the response cache: a hash of what decides the answer.

Computed on the canonical (OpenAI chat) form, so that an OpenAI request and the equivalent
Anthropic or Responses request share a key, as canonical JSON with sorted keys, so that key
order does not matter. Everything in the body counts (messages, system, tools, tool_choice,
response format, sampling parameters, max tokens, stop sequences, and fields the gateway does
not know, which may change the answer too) but what only changes how the answer is delivered
or who asked: `stream`, `stream_options`, `user`, `metadata` and request ids. The model is
not the name the client gave but the route's resolved models (aliases resolved), so that an
alias and the model it names share answers, and an alias moved to another model does not
serve the old model's answers. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = ["IGNORED_FIELDS", "cache_key", "request_material"]

IGNORED_FIELDS = frozenset(
    {
        "model",  # replaced by the resolved models
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "request_id",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
    }
)
"""Canonical fields that do not decide the answer."""

_SAME_AS = {"max_completion_tokens": "max_tokens"}
"""Spellings of one parameter, reduced to one (Anthropic's `max_tokens` arrives as
`max_tokens`, an OpenAI client may send `max_completion_tokens`)."""

_encode = msgspec.json.Encoder(order="sorted").encode


def request_material(canonical: dict[str, Any], models: Iterable[str]) -> dict[str, Any]:
    """What decides the answer to a canonical request served by `models`."""
    material: dict[str, Any] = {
        _SAME_AS.get(name, name): value
        for name, value in canonical.items()
        if value is not None and name not in IGNORED_FIELDS
    }
    material["models"] = list(models)
    messages = material.get("messages")
    if type(messages) is list:
        material["messages"] = [
            m if type(m) is dict and type(m.get("content")) is str else _plain(m) for m in messages
        ]
    return material


def _plain(message: Any) -> Any:
    """A message whose content is one text part, with that text as its content (what the
    Anthropic translation makes of a single text block)."""
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    if (
        isinstance(content, list)
        and len(content) == 1
        and isinstance(content[0], dict)
        and content[0].get("type") == "text"
        and len(content[0]) == 2
        and isinstance(content[0].get("text"), str)
    ):
        return {**message, "content": content[0]["text"]}
    return message


def cache_key(canonical: dict[str, Any], models: Iterable[str], namespace: str = "") -> str:
    """The hex sha256 of the request's material in `namespace` (the owner, or "" when
    answers are shared)."""
    material = _encode(request_material(canonical, models))
    return hashlib.sha256(b"".join((namespace.encode(), b"\0", material))).hexdigest()

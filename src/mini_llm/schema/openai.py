"""What the gateway checks of an OpenAI Chat Completions request.

Only the fields the gateway relies on or that are cheap to check are typed here; the request
itself travels on as the decoded dict, so unknown fields pass through untouched.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from ..errors import InvalidRequestError

__all__ = ["ChatMessage", "ChatRequest", "StreamOptions", "validate_chat_request"]

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(msgspec.Struct):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None


_AT = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def validation_error(exc: msgspec.ValidationError) -> InvalidRequestError:
    """A 400 naming the offending field (`param`) in OpenAI's dotted style."""
    text = str(exc)
    path = ""
    match = _AT.search(text)
    if match:
        path = match.group(1)
        text = text[: match.start()]
    missing = _MISSING.search(text)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    param = path or None
    where = f" at '{param}'" if param else ""
    return InvalidRequestError(f"Invalid request{where}: {text}", param=param)


def validate_chat_request(body: dict[str, Any]) -> ChatRequest:
    try:
        return msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as e:
        raise validation_error(e) from None

"""Typed answers of the gateway (OpenAI Chat Completions shapes). Unknown fields are ignored,
so a newer gateway or upstream never breaks an older client."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "Choice",
    "ChunkChoice",
    "Delta",
    "Health",
    "Message",
    "Model",
    "Usage",
]


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Message(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class Choice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: Message = msgspec.field(default_factory=Message)
    finish_reason: str | None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = msgspec.field(default_factory=list)
    usage: Usage | None = None

    @property
    def text(self) -> str:
        """The first choice's text ("" when there is none)."""
        return (self.choices[0].message.content or "") if self.choices else ""


class Delta(msgspec.Struct, kw_only=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: Delta = msgspec.field(default_factory=Delta)
    finish_reason: str | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None

    @property
    def text(self) -> str:
        """The text this chunk adds (first choice)."""
        return (self.choices[0].delta.content or "") if self.choices else ""


class Model(msgspec.Struct, kw_only=True):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""


class Health(msgspec.Struct, kw_only=True):
    status: str
    pid: int | None = None
    version: str = ""
    uptime_s: float = 0.0
    started_at: float = 0.0

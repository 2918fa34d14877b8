"""Wire-format and operation identities, shared by client dialects and provider formats.

A client dialect and a provider wire format that name the same `Format` object speak the same
bytes: a request between them passes through untouched. They are compared with `is`, never by
name. An `Operation` is what a request asks for (a chat answer, a token count…); a provider
format serves some operations, and the router skips targets that cannot serve the one asked.
"""

from __future__ import annotations

__all__ = [
    "ANTHROPIC",
    "BEDROCK_CONVERSE",
    "CHAT",
    "COUNT_TOKENS",
    "EMBEDDINGS",
    "GEMINI",
    "OPENAI",
    "OPENAI_RESPONSES",
    "RESPONSES",
    "Format",
    "Operation",
]


class Format:
    """The identity of a wire format (its name is for people and logs only)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Format({self.name})"


class Operation:
    """The identity of an operation (its name is for people, logs and error messages)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Operation({self.name})"


OPENAI = Format("openai")
"""OpenAI Chat Completions: also the canonical format."""
OPENAI_RESPONSES = Format("openai.responses")
"""OpenAI's Responses API: its own request, response and stream shapes."""
ANTHROPIC = Format("anthropic")
GEMINI = Format("gemini")
"""Gemini's `generateContent` family: what a Gemini provider speaks, and the Gemini-native
ingress (`/v1beta/models/{model}:method`) takes."""
BEDROCK_CONVERSE = Format("bedrock.converse")
"""AWS Bedrock's Converse API (no client dialect speaks it: requests to it are translated)."""

CHAT = Operation("chat")
"""A model's answer to a conversation, whole or streamed."""
COUNT_TOKENS = Operation("count_tokens")
"""How many input tokens a request would use."""
RESPONSES = Operation("responses")
"""A model's answer to a Responses API request: served natively by an endpoint whose format is
`OPENAI_RESPONSES`, by every other wire format's chat endpoint from the canonical form."""
EMBEDDINGS = Operation("embeddings")
"""Vectors for texts. Its canonical form is OpenAI's `/embeddings` request and answer: served
as they are by OpenAI-format endpoints, translated by Gemini's `batchEmbedContents`."""

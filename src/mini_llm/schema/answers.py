"""The shapes of the gateway's answers, for the OpenAPI document (`gateway/openapi.py`).

Only what a client can count on is required; every object may carry more fields (answers pass
through from upstreams as they came). The schemathesis suite checks every answer the gateway
gives against these, so they cannot drift from what it sends.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .anthropic import Block

__all__ = [
    "AnthropicError",
    "AnthropicErrorBody",
    "AnthropicMessage",
    "AnthropicStreamEvent",
    "AnthropicTokenCount",
    "AnthropicUsage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatUsage",
    "DeletedResponse",
    "Health",
    "InputItems",
    "Model",
    "ModelList",
    "OpenAIError",
    "OpenAIErrorBody",
    "ProvidersReset",
    "ResponseObject",
    "ResponsesStreamEvent",
    "ResponsesUsage",
]


class ChatUsage(msgspec.Struct):
    """Tokens of a Chat Completions answer (a stream's last chunk when asked for)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int | None = None
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class AnthropicUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class ResponsesUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int | None = None
    input_tokens_details: dict[str, Any] | None = None
    output_tokens_details: dict[str, Any] | None = None


class ChatAnswerMessage(msgspec.Struct):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None


class ChatChoice(msgspec.Struct):
    index: int
    message: ChatAnswerMessage
    finish_reason: str | None = None


class ChatCompletion(msgspec.Struct):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: dict[str, Any]
    finish_reason: str | None = None


class ChatCompletionChunk(msgspec.Struct):
    """One `data:` event of a Chat Completions stream (which ends with `data: [DONE]`)."""

    id: str
    object: Literal["chat.completion.chunk"]
    model: str
    choices: list[ChunkChoice]
    created: int | None = None
    usage: ChatUsage | None = None


class AnthropicMessage(msgspec.Struct):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[Block]
    model: str
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: AnthropicUsage | None = None


class AnthropicStreamEvent(msgspec.Struct):
    """One event of a Messages stream: `message_start`, `content_block_start`,
    `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, `ping`,
    `error`."""

    type: str


class AnthropicTokenCount(msgspec.Struct):
    input_tokens: int
    estimated: bool | None = None


class ResponseObject(msgspec.Struct):
    id: str
    object: Literal["response"]
    model: str
    output: list[dict[str, Any]]
    status: str | None = None
    created_at: float | None = None
    usage: ResponsesUsage | None = None


class ResponsesStreamEvent(msgspec.Struct):
    """One event of a Responses stream (`response.created` … `response.completed`)."""

    type: str
    sequence_number: int | None = None


class InputItems(msgspec.Struct):
    object: Literal["list"]
    data: list[dict[str, Any]]
    has_more: bool | None = None
    first_id: str | None = None
    last_id: str | None = None


class DeletedResponse(msgspec.Struct):
    id: str
    object: str
    deleted: bool


class Model(msgspec.Struct):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    capabilities: list[Literal["chat", "embeddings"]] | None = None
    target: str | None = None
    chain: list[str] | None = None
    targets: list[str] | None = None
    fallbacks: list[str] | None = None


class ModelList(msgspec.Struct):
    object: Literal["list"]
    data: list[Model]


class Health(msgspec.Struct):
    status: Literal["ok"]
    version: str
    pid: int
    uptime_s: float | None = None
    config_fingerprint: str | None = None
    in_flight: int | None = None
    providers: dict[str, Any] | None = None


class ProvidersReset(msgspec.Struct):
    reset: dict[str, int]


class OpenAIError(msgspec.Struct):
    message: str
    type: str | None = None
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(msgspec.Struct):
    """OpenAI's error shape: the Chat Completions, Responses, embeddings, model and admin
    routes. The gateway's own codes: `invalid_api_key` and `invalid_signature` (401),
    `model_not_allowed` and `model_not_priced` (403: a budgeted key and a model without a
    price), `model_not_found` (404), `rate_limit_exceeded` and `insufficient_quota` (429),
    `previous_response_not_found` (400); upstream errors keep the upstream's code."""

    error: OpenAIError


class AnthropicError(msgspec.Struct):
    type: str
    message: str


class AnthropicErrorBody(msgspec.Struct):
    """Anthropic's error shape: the Messages routes."""

    type: Literal["error"]
    error: AnthropicError

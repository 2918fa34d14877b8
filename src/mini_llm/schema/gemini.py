"""What the gateway checks of Gemini-native requests, and the shapes of Gemini's answers.

Gemini's JSON is camelCase, but the API takes the proto field names too (`mime_type`,
`parameters_json_schema`: google-genai sends some of those), so a body is read through
`camel_keys` first: structural keys camelCased, free-form values (function arguments and
results, schemas) left as they are. These Structs are written in snake_case and renamed. They
validate a request (400 naming the field) and describe every Gemini route in the OpenAPI
document. Unknown fields are let through: a Gemini provider gets the body as it came.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..errors import InvalidRequestError
from .openai import validation_error

__all__ = [
    "BatchEmbedContentsRequest",
    "BatchEmbedContentsResponse",
    "Blob",
    "Candidate",
    "Content",
    "ContentEmbedding",
    "CountTokensRequest",
    "CountTokensResponse",
    "EmbedContentRequest",
    "EmbedContentResponse",
    "FileData",
    "FunctionCall",
    "FunctionDeclaration",
    "FunctionResponse",
    "GeminiModel",
    "GeminiModelList",
    "GenerateContentRequest",
    "GenerateContentResponse",
    "GenerationConfig",
    "GoogleError",
    "GoogleErrorBody",
    "Part",
    "Tool",
    "ToolConfig",
    "UsageMetadata",
    "camel_keys",
    "validate_gemini",
]

# Values that are the client's own data, not Gemini's structure: their keys stay as they are.
_OPAQUE = frozenset(
    {
        "args",
        "response",
        "parameters",
        "parametersJsonSchema",
        "responseSchema",
        "responseJsonSchema",
        "metadata",
        "labels",
    }
)


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_keys(value: Any) -> Any:
    """A Gemini body with its structural keys in camelCase (`inline_data` -> `inlineData`);
    free-form values (function arguments and results, schemas) untouched."""
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _camel(key) if isinstance(key, str) else key
        out[name] = item if name in _OPAQUE else camel_keys(item)
    return out


class _Camel(msgspec.Struct, rename="camel", omit_defaults=True):
    pass


class Blob(_Camel):
    mime_type: str
    data: str


class FileData(_Camel):
    file_uri: str
    mime_type: str | None = None


class FunctionCall(_Camel):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class FunctionResponse(_Camel):
    name: str
    response: dict[str, Any] | None = None
    id: str | None = None


class Part(_Camel):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought: bool | None = None
    thought_signature: str | None = None


class Content(_Camel):
    parts: list[Part] = []
    role: Literal["user", "model", "function", "system"] | None = None


class FunctionDeclaration(_Camel):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None


class Tool(_Camel):
    function_declarations: list[FunctionDeclaration] | None = None


class FunctionCallingConfig(_Camel):
    mode: Literal["AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"] | None = None
    allowed_function_names: list[str] | None = None


class ToolConfig(_Camel):
    function_calling_config: FunctionCallingConfig | None = None


class ThinkingConfig(_Camel):
    thinking_budget: int | None = None
    include_thoughts: bool | None = None
    thinking_level: str | None = None


class GenerationConfig(_Camel):
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    candidate_count: Annotated[int, msgspec.Meta(ge=1, le=8)] | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    stop_sequences: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    thinking_config: ThinkingConfig | None = None


class GenerateContentRequest(_Camel):
    contents: Annotated[list[Content], msgspec.Meta(min_length=1)]
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    safety_settings: list[dict[str, Any]] | None = None
    cached_content: str | None = None


class CountTokensRequest(_Camel):
    contents: list[Content] | None = None
    generate_content_request: dict[str, Any] | None = None


class EmbedContentRequest(_Camel):
    content: Content
    model: str | None = None
    task_type: str | None = None
    title: str | None = None
    output_dimensionality: Annotated[int, msgspec.Meta(ge=1, le=65536)] | None = None


class BatchEmbedContentsRequest(_Camel):
    requests: Annotated[list[EmbedContentRequest], msgspec.Meta(min_length=1, max_length=2048)]


# Answers ------------------------------------------------------------------------------------


class Candidate(_Camel):
    content: Content | None = None
    finish_reason: str | None = None
    index: int | None = None


class UsageMetadata(_Camel):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    total_token_count: int | None = None
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None


class GenerateContentResponse(_Camel):
    """A whole answer, and each event of a stream (`data: {...}`)."""

    candidates: list[Candidate] | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None


class CountTokensResponse(_Camel):
    total_tokens: int


class ContentEmbedding(_Camel):
    values: list[float]


class EmbedContentResponse(_Camel):
    embedding: ContentEmbedding


class BatchEmbedContentsResponse(_Camel):
    embeddings: list[ContentEmbedding]


class GeminiModel(_Camel):
    name: str
    display_name: str | None = None
    supported_generation_methods: list[str] | None = None


class GeminiModelList(_Camel):
    models: list[GeminiModel]


class GoogleError(msgspec.Struct):
    code: int
    message: str
    status: str


class GoogleErrorBody(msgspec.Struct):
    error: GoogleError


def validate_gemini(body: dict[str, Any], kind: type[msgspec.Struct]) -> Any:
    """`body` checked as `kind`; a 400 naming the field (in Gemini's camelCase)."""
    try:
        return msgspec.convert(camel_keys(body), kind)
    except msgspec.ValidationError as e:
        raise validation_error(e) from None
    except (TypeError, ValueError) as e:  # pragma: no cover - msgspec raises ValidationError
        raise InvalidRequestError(f"Invalid request: {e}") from None

"""What the gateway checks of an Anthropic Messages request (`/v1/messages`).

Content blocks are a tagged union on `type`, as Anthropic defines them (the `anthropic`
package's `ContentBlockParam`). Blocks the gateway only passes along (server tool results,
container uploads...) are typed by their tag alone. Unknown fields are allowed: to an
Anthropic provider the request travels as the client sent it, only `model` rewritten, and the
translation reports each field it cannot carry (`dialects/anthropic/request.py`).

`messages` take the three roles the API takes: `user`, `assistant`, and `system` (a
mid-conversation system message, text only).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from ..errors import InvalidRequestError
from .openai import validation_error

__all__ = [
    "Block",
    "DocumentBlock",
    "ImageBlock",
    "Message",
    "MessagesRequest",
    "OutputConfig",
    "RedactedThinkingBlock",
    "SearchResultBlock",
    "TextBlock",
    "Thinking",
    "ThinkingBlock",
    "Tool",
    "ToolChoice",
    "ToolResultBlock",
    "ToolUseBlock",
    "validate_messages_request",
]


class Base64Source(msgspec.Struct, tag="base64"):
    media_type: str
    data: str


class URLSource(msgspec.Struct, tag="url"):
    url: str


class FileSource(msgspec.Struct, tag="file"):
    file_id: str


class TextSource(msgspec.Struct, tag="text"):
    data: str
    media_type: str = "text/plain"


class ContentSource(msgspec.Struct, tag="content"):
    content: Any = None


class TextBlock(msgspec.Struct, tag="text"):
    text: str


class ImageBlock(msgspec.Struct, tag="image"):
    source: Base64Source | URLSource | FileSource


class DocumentBlock(msgspec.Struct, tag="document"):
    source: Base64Source | URLSource | FileSource | TextSource | ContentSource
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None


class ToolUseBlock(msgspec.Struct, tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


class ThinkingBlock(msgspec.Struct, tag="thinking"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking"):
    data: str


class SearchResultBlock(msgspec.Struct, tag="search_result"):
    source: str = ""
    title: str = ""
    content: list[TextBlock] = []
    citations: dict[str, Any] | None = None


class ToolReferenceBlock(msgspec.Struct, tag="tool_reference"):
    tool_name: str = ""


class BrowserStateBlock(msgspec.Struct, tag="browser_state"):
    pass


ToolResultPart = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | SearchResultBlock
    | ToolReferenceBlock
    | BrowserStateBlock
)


class ToolResultBlock(msgspec.Struct, tag="tool_result"):
    tool_use_id: str
    content: str | list[ToolResultPart] | None = None
    is_error: bool | None = None


# Blocks only an Anthropic provider understands; translation refuses them by name.
class ServerToolUseBlock(msgspec.Struct, tag="server_tool_use"):
    pass


class WebSearchToolResultBlock(msgspec.Struct, tag="web_search_tool_result"):
    pass


class WebFetchToolResultBlock(msgspec.Struct, tag="web_fetch_tool_result"):
    pass


class CodeExecutionToolResultBlock(msgspec.Struct, tag="code_execution_tool_result"):
    pass


class BashCodeExecutionToolResultBlock(msgspec.Struct, tag="bash_code_execution_tool_result"):
    pass


class TextEditorCodeExecutionToolResultBlock(
    msgspec.Struct, tag="text_editor_code_execution_tool_result"
):
    pass


class ToolSearchToolResultBlock(msgspec.Struct, tag="tool_search_tool_result"):
    pass


class McpToolUseBlock(msgspec.Struct, tag="mcp_tool_use"):
    pass


class McpToolResultBlock(msgspec.Struct, tag="mcp_tool_result"):
    pass


class ContainerUploadBlock(msgspec.Struct, tag="container_upload"):
    pass


Block = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | SearchResultBlock
    | ServerToolUseBlock
    | WebSearchToolResultBlock
    | WebFetchToolResultBlock
    | CodeExecutionToolResultBlock
    | BashCodeExecutionToolResultBlock
    | TextEditorCodeExecutionToolResultBlock
    | ToolSearchToolResultBlock
    | McpToolUseBlock
    | McpToolResultBlock
    | ContainerUploadBlock
)


class Message(msgspec.Struct):
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class Tool(msgspec.Struct):
    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None
    """None or "custom" for a client tool; anything else is an Anthropic server tool."""


class ToolChoice(msgspec.Struct):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(msgspec.Struct):
    """`enabled` (with `budget_tokens`), `adaptive`, `disabled`, `between_tools`; a type added
    after this was written is checked by Anthropic, and dropped (named) on translation."""

    type: str
    budget_tokens: int | None = None
    display: str | None = None


class OutputFormat(msgspec.Struct):
    type: str
    schema: dict[str, Any] | None = None


class OutputConfig(msgspec.Struct):
    effort: str | None = None
    format: OutputFormat | None = None


class Metadata(msgspec.Struct):
    user_id: str | None = None


class MessagesRequest(msgspec.Struct):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: list[Message]
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None


class LooseMessage(msgspec.Struct):
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class MessagesEnvelope(msgspec.Struct):
    """What routing needs, and all a request bound for an Anthropic upstream is checked for:
    the upstream knows its own content blocks better than any list kept here."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: list[LooseMessage]
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    stream: bool | None = None


def validate_messages_request(body: dict[str, Any], *, count_only: bool = False) -> MessagesRequest:
    """The typed request, or a 400 naming the offending field.

    `max_tokens` is required for `/v1/messages` and not for `/v1/messages/count_tokens`.
    """
    return _validate(body, MessagesRequest, count_only)


def validate_messages_envelope(
    body: dict[str, Any], *, count_only: bool = False
) -> MessagesEnvelope:
    """Only what routing needs (a request an Anthropic upstream will check itself)."""
    return _validate(body, MessagesEnvelope, count_only)


_Checked = TypeVar("_Checked", MessagesRequest, MessagesEnvelope)


def _validate(body: dict[str, Any], kind: type[_Checked], count_only: bool) -> _Checked:
    try:
        request = msgspec.convert(body, kind)
    except msgspec.ValidationError as e:
        raise validation_error(e) from None
    if request.max_tokens is None and not count_only:
        raise InvalidRequestError(
            "Invalid request: Object missing required field `max_tokens`", param="max_tokens"
        )
    return request

"""A JSON value valid for a JSON schema, made only from what the schema says. Pure.

The `mock` provider fills tool-call arguments and `json_schema` answers with it; a schema that
nothing satisfies (`pattern`, `multipleOf`, contradictory bounds) gets a value of the right
type that may still miss it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["schema_example"]

_MAX_DEPTH = 8  # how deep properties, items and $refs are followed


def schema_example(schema: Mapping[str, Any]) -> Any:
    """A value valid for a JSON schema, made only from what the schema says.

    Objects get every required property; arrays `minItems` items (at least one, at most
    `maxItems`); `const`, then the first `enum` value, win over the type; `anyOf`/`oneOf` take
    their first option that is not `null`, `allOf` is merged; local `$ref`s (`#/$defs/...`) are
    followed. Strings honour common formats and length bounds, numbers their bounds (not
    `pattern` or `multipleOf`). Past a depth of 8 an object is `{}` and an array `[]`, so a
    recursive schema ends.
    """
    return _example(schema, schema, 0)


def _example(schema: Any, root: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return None  # `true` (anything goes) or a malformed schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root)
        if depth >= _MAX_DEPTH:  # a recursive schema ends here
            kind = _type_of(target) if isinstance(target, dict) else "null"
            return (
                _empty(kind) if kind in ("object", "array") else _BY_TYPE[kind](target, root, depth)
            )
        return _example(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options:
            option = next((o for o in options if not _is_null(o)), options[0])
            return _example(option, root, depth + 1)
    parts = schema.get("allOf")
    if isinstance(parts, list) and parts:
        return _example(_merge(schema, parts, root), root, depth + 1)
    kind = _type_of(schema)
    if depth >= _MAX_DEPTH and kind in ("object", "array"):
        return _empty(kind)
    return _BY_TYPE[kind](schema, root, depth)


def _empty(kind: str) -> dict[str, Any] | list[Any]:
    return {} if kind == "object" else []


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    """A local JSON pointer (`#`, `#/$defs/Name`); anything else resolves to `{}` (any value)."""
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for token in filter(None, ref[1:].split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            return {}
        node = node[token]
    return node


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _merge(schema: Mapping[str, Any], parts: Sequence[Any], root: Mapping[str, Any]) -> Any:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("$ref"), str):
            part = _resolve(part["$ref"], root)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str) and kind in _BY_TYPE:
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _object(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    extra = schema.get("additionalProperties")
    required = schema.get("required")
    names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
    return {
        name: _example(
            properties.get(name, extra if isinstance(extra, dict) else {}), root, depth + 1
        )
        for name in dict.fromkeys(names)
    }


def _array(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    if isinstance(items, list):  # the tuple form of drafts 4 to 7
        prefix, items = items, schema.get("additionalItems")
    prefix = prefix if isinstance(prefix, list) else []
    count = max(_whole(schema.get("minItems"), 0), len(prefix), 1)
    most = schema.get("maxItems")
    if isinstance(most, int) and not isinstance(most, bool):
        count = min(count, max(most, 0))
    return [
        _example(
            prefix[i] if i < len(prefix) else items if items is not None else {}, root, depth + 1
        )
        for i in range(count)
    ]


_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "mock@example.com",
    "uri": "https://example.com/mock",
    "url": "https://example.com/mock",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}


def _string(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> str:
    text = _FORMATS.get(str(schema.get("format")), "mock")
    text = text.ljust(_whole(schema.get("minLength"), 0), "x")
    most = schema.get("maxLength")
    if isinstance(most, int) and not isinstance(most, bool):
        text = text[: max(most, 0)]
    return text


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    def bound(key: str) -> float | None:
        value = schema.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) else None

    value = 1.0 if integer else 1.5
    low, low_excl = bound("minimum"), bound("exclusiveMinimum")
    high, high_excl = bound("maximum"), bound("exclusiveMaximum")
    if low is not None:
        value = low
    elif low_excl is not None:
        value = low_excl + 1
    if high is not None and value > high:
        value = high
    elif high_excl is not None and value >= high_excl:
        value = high_excl - 1
    if integer:
        return math.ceil(value) if low is not None or low_excl is not None else math.floor(value)
    return value


def _whole(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


_Maker = Callable[[Mapping[str, Any], Mapping[str, Any], int], Any]

_BY_TYPE: dict[str, _Maker] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": lambda schema, root, depth: _number(schema, True),
    "number": lambda schema, root, depth: _number(schema, False),
    "boolean": lambda schema, root, depth: True,
    "null": lambda schema, root, depth: None,
}

"""A mock AWS Bedrock Runtime speaking the real wire: Converse JSON and ConverseStream's binary
event stream (real frames: prelude, headers, payload, CRCs), AWS's JSON errors.

Every request is authenticated as AWS does: a SigV4 `Authorization` header is checked by
botocore's own signer (the reference implementation, independent of the gateway's) over the
headers it names and the path exactly as it arrived (so a model id's `%3A` must have been
signed as `%253A`); an unknown access key is 403 `UnrecognizedClientException`, a wrong
signature 403 `InvalidSignatureException`, a date more than 5 minutes off 403 "Signature
expired". A Bedrock API key comes as `Authorization: Bearer`. Answers follow
`scenario.decide`; a model id ending in `error-<status>` answers that status.

Prompt caching as Converse defines it: a `cachePoint` block (`{"type": "default"}`, an optional
`ttl` of `5m` or `1h`, nothing else) may end a message's content, the `system` list or the
`toolConfig.tools` list; at most 4 in a request, TTLs never longer after a shorter one (in the
order tools, system, messages), else a 400 `ValidationException`. A request with cache points
reports the prefix before its last one as written (`cacheWriteInputTokens`, with
`cacheDetails` per TTL when a point is `1h`) the first time this mock sees it and as read
(`cacheReadInputTokens`) afterwards; without any, the fixed `USAGE`.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mini_llm.providers.eventstream import encode_message

from .openai_upstream import Recorded
from .scenario import Ask, Reply, decide, pieces

BedrockReply = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]

ACCESS_KEY = "AKIDMINILLMTEST0001"
SECRET_KEY = "mini-llm/test/secret+key/EXAMPLEKEY000001"
BEARER = "ABSKbWluaS1sbG0tdGVzdC1iZWRyb2NrLWFwaS1rZXk="
REGION = "us-east-1"
USAGE = {
    "inputTokens": 12,
    "outputTokens": 6,
    "totalTokens": 21,
    "cacheReadInputTokens": 3,
    "cacheWriteInputTokens": 0,
}
ERRORS = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


USAGE_KEY = web.RequestKey("usage", dict)
"""The usage a request's answer reports (its cache points decide it)."""
MAX_CACHE_POINTS = 4
_TTL_SECONDS = {"5m": 300, "1h": 3600}


def cache_points(body: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """Every `cachePoint` of a Converse body, in the order the prompt is read: `(where, index
    of the block, the point)`."""
    found: list[tuple[str, int, dict[str, Any]]] = []
    sections: list[tuple[str, Any]] = [
        ("toolConfig.tools", (body.get("toolConfig") or {}).get("tools"))
    ]
    sections.append(("system", body.get("system")))
    for i, message in enumerate(body.get("messages") or ()):
        sections.append((f"messages.{i}.content", message.get("content")))
    for where, blocks in sections:
        for j, block in enumerate(blocks or ()):
            if isinstance(block, dict) and "cachePoint" in block:
                found.append((where, j, block))
    return found


def cache_problem(body: dict[str, Any]) -> str | None:
    """What Converse refuses in a request's cache points (its wording, roughly), or None."""
    points = cache_points(body)
    if len(points) > MAX_CACHE_POINTS:
        return (
            f"The number of cache points in the request ({len(points)}) exceeds the "
            f"maximum allowed ({MAX_CACHE_POINTS})."
        )
    longest = None
    for where, j, block in points:
        if set(block) != {"cachePoint"}:
            return f"{where}.{j}: a cachePoint block takes no other member"
        point = block["cachePoint"]
        if not isinstance(point, dict) or point.get("type") != "default":
            return f"{where}.{j}.cachePoint.type: Member must satisfy enum value set: [default]"
        if set(point) - {"type", "ttl"}:
            return f"{where}.{j}.cachePoint: unknown member {sorted(set(point) - {'type', 'ttl'})}"
        ttl = point.get("ttl", "5m")
        if ttl not in _TTL_SECONDS:
            return f"{where}.{j}.cachePoint.ttl: Member must satisfy enum value set: [5m, 1h]"
        if longest is not None and _TTL_SECONDS[ttl] > longest:
            return "A cache point with a longer TTL cannot follow one with a shorter TTL"
        longest = _TTL_SECONDS[ttl]
    return None


def _prefix(body: dict[str, Any], ttl: str | None = None) -> bytes | None:
    """What comes before the request's last cache point (of that `ttl`), as bytes (None
    without one)."""
    points = [
        p for p in cache_points(body) if ttl is None or p[2]["cachePoint"].get("ttl", "5m") == ttl
    ]
    if not points:
        return None
    where, j, _ = points[-1]
    tools = (body.get("toolConfig") or {}).get("tools") or []
    if where == "toolConfig.tools":
        return json.dumps(tools[:j]).encode()
    system = body.get("system") or []
    if where == "system":
        return json.dumps([tools, system[:j]]).encode()
    i = int(where.split(".")[1])
    messages = body.get("messages") or []
    cut = [*messages[:i], {**messages[i], "content": messages[i]["content"][:j]}]
    return json.dumps([tools, system, cut]).encode()


def error_response(status: int, message: str, kind: str | None = None) -> web.Response:
    kind = kind or ERRORS.get(status, "InternalServerException")
    headers = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return web.json_response({"message": message}, status=status, headers=headers)


def verify_sigv4(
    request: web.Request, body: bytes, keys: dict[str, str], region: str = REGION
) -> web.Response | None:
    """None when the request's signature is right; else AWS's refusal."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return error_response(
            403, "Missing Authentication Token", "MissingAuthenticationTokenException"
        )
    fields = dict(
        part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(",")
    )
    key_id, day, where, service, _ = fields["Credential"].split("/")
    if key_id not in keys:
        return error_response(
            403,
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        )
    amz_date = request.headers.get("X-Amz-Date", "")
    try:
        stamp = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return error_response(403, "X-Amz-Date is malformed", "InvalidSignatureException")
    if abs(stamp - time.time()) > 300:
        return error_response(403, "Signature expired", "InvalidSignatureException")
    if where != region or service != "bedrock" or day != amz_date[:8]:
        return error_response(
            403, "Credential should be scoped correctly", "InvalidSignatureException"
        )
    signed = fields["SignedHeaders"].split(";")
    headers = {name: request.headers.get(name, "") for name in signed}
    url = f"http://{request.headers.get('Host', request.host)}{request.raw_path}"
    token = request.headers.get("X-Amz-Security-Token")
    reference = SigV4Auth(Credentials(key_id, keys[key_id], token), service, where)
    aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws.context["timestamp"] = amz_date
    canonical = reference.canonical_request(aws)
    expected = reference.signature(reference.string_to_sign(aws, canonical), aws)
    if (
        expected != fields["Signature"]
        or reference.signed_headers(reference.headers_to_sign(aws)) != fields["SignedHeaders"]
    ):
        message = (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details."
        )
        return error_response(403, message, "InvalidSignatureException")
    return None


def ask_of(body: dict[str, Any]) -> Ask:
    ask = Ask(system="".join(b.get("text", "") for b in body.get("system") or ()))
    messages = body.get("messages") or []
    for message in messages:
        if message.get("role") != "user":
            continue
        blocks = message.get("content") or []
        results = [b["toolResult"] for b in blocks if "toolResult" in b]
        texts = [b["text"] for b in blocks if "text" in b]
        if texts or not results:
            ask.user_texts.append("".join(texts))
        for block in blocks:
            if "image" in block:
                ask.images.append("image/" + block["image"]["format"])
        if message is messages[-1] and results:
            ask.tool_results = [
                "".join(c.get("text", "") for c in r.get("content") or ()) for r in results
            ]
    config = body.get("toolConfig") or {}
    for tool in config.get("tools") or ():
        spec = tool.get("toolSpec")
        if spec:
            ask.tools.append((spec["name"], spec["inputSchema"]["json"]))
    choice = config.get("toolChoice") or {}
    if "tool" in choice:
        ask.forced_tool = choice["tool"]["name"]
    return ask


def _content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    for call in reply.calls:
        blocks.append(
            {"toolUse": {"toolUseId": f"tooluse_{call.id}", "name": call.name, "input": call.args}}
        )
    return blocks


def converse_json(reply: Reply, usage: dict[str, Any] = USAGE) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": _content(reply)}},
        "stopReason": "tool_use" if reply.calls else "end_turn",
        "usage": usage,
        "metrics": {"latencyMs": 42},
    }


def event(kind: str, payload: dict[str, Any]) -> bytes:
    # the real service pads each event with a `p` field, so sizes reveal nothing
    data = json.dumps({**payload, "p": "abcdefghijkl"[: len(kind) % 12]}).encode()
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(dict(headers), data)


def exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(dict(headers), json.dumps({"message": message}).encode())


def stream_frames(reply: Reply, usage: dict[str, Any] = USAGE) -> list[bytes]:
    frames = [event("messageStart", {"role": "assistant"})]
    index = 0
    if reply.text:
        for piece in pieces(reply.text):
            frames.append(
                event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
            )
        frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for call in reply.calls:
        start = {"toolUse": {"toolUseId": f"tooluse_{call.id}", "name": call.name}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for piece in pieces(json.dumps(call.args), 6):
            delta = {"toolUse": {"input": piece}}
            frames.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    stop = "tool_use" if reply.calls else "end_turn"
    frames.append(event("messageStop", {"stopReason": stop}))
    frames.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
    return frames


async def send_frames(request: web.Request, frames: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
    await response.prepare(request)
    for frame in frames:
        # cut across frame boundaries, as TCP may: the decoder must join them
        half = len(frame) // 2
        await response.write(frame[:half])
        await response.write(frame[half:])
    await response.write_eof()
    return response


def smart() -> BedrockReply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        answer = decide(ask_of(body))
        usage = request.get(USAGE_KEY, USAGE)
        if request.match_info["action"] == "converse-stream":
            return await send_frames(request, stream_frames(answer, usage))
        return web.json_response(converse_json(answer, usage))

    return reply


class BedrockUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.keys = {ACCESS_KEY: SECRET_KEY}
        self.bearer = {BEARER}
        self.refused = 0
        self.cached: set[str] = set()
        """Digests of the prompt prefixes cache points wrote."""
        self._script: deque[BedrockReply] = deque()

    def push(self, *replies: BedrockReply) -> None:
        self._script.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self._script.clear()
        self.refused = 0
        self.cached.clear()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/model/{model}/{action}", self._model)
        return app

    async def _model(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw)
        self.requests.append(
            Recorded(request.method, request.raw_path, dict(request.headers), body)
        )
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            refused = (
                None
                if auth[7:] in self.bearer
                else error_response(
                    403,
                    "Invalid API Key format: Must start with pre-defined prefix",
                    "AccessDeniedException",
                )
            )
        else:
            refused = verify_sigv4(request, raw, self.keys)
        if refused is not None:
            self.refused += 1
            return refused
        if request.match_info["action"] not in ("converse", "converse-stream"):
            return error_response(404, "unknown operation", "UnknownOperationException")
        if "model" in body or "messages" not in body:
            return error_response(
                400, "Malformed input request, please reformat your input and try again."
            )
        model = request.match_info["model"]
        tail = model.rsplit("error-", 1)
        if len(tail) == 2 and tail[1].isdigit():
            return error_response(int(tail[1]), f"mock bedrock error {tail[1]}")
        problem = cache_problem(body)
        if problem is not None:
            return error_response(400, problem)
        request[USAGE_KEY] = self._usage(body)
        reply = self._script.popleft() if self._script else smart()
        return await reply(request, body)

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = _prefix(body)
        if prefix is None:
            return USAGE
        cached = max(len(prefix) // 4, 1)
        digest = hashlib.sha256(prefix).hexdigest()
        read = digest in self.cached
        self.cached.add(digest)
        usage: dict[str, Any] = {
            "inputTokens": USAGE["inputTokens"],
            "outputTokens": USAGE["outputTokens"],
            "cacheReadInputTokens": cached if read else 0,
            "cacheWriteInputTokens": 0 if read else cached,
        }
        usage["totalTokens"] = sum(usage.values())
        hour = _prefix(body, "1h")
        if not read and hour is not None:
            # the writes per TTL, the hour first, as Converse sorts them
            hour_tokens = min(max(len(hour) // 4, 1), cached)
            details = [{"ttl": "1h", "inputTokens": hour_tokens}]
            if cached > hour_tokens:
                details.append({"ttl": "5m", "inputTokens": cached - hour_tokens})
            usage["cacheDetails"] = details
        return usage

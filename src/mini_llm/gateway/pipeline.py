"""The generic handler: one request's way through, for any client dialect.

    body  → dialect.parse → policies.before → router (route, then the targets serving the
    operation) → dispatcher → dialect renders the answer (whole, native stream, or canonical
    chunks as events) → policies.after

Errors of any kind become one answer in the dialect (`error_body` before the first byte,
`error_event` after it); every byte that came from an upstream passes the redactor on its way
to the client. With no policy, the only per-request cost beyond the dispatch is this function.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..call import Answer, Call
from ..canonical import CompletionBuilder, Usage, answer_chunks
from ..dialects.base import Dialect
from ..errors import GatewayError, InvalidRequestError
from ..formats import CHAT, OPENAI
from ..policies.auth import NOTES
from ..policies.base import Given, RequestInfo
from ..policies.stream_usage import WHOLE_USAGE_READERS, count_text, make_tap
from ..policies.usage import cost_of
from .body import decode_object
from .responses import error_response, internal_error, request_id
from .streaming import write_stream

if TYPE_CHECKING:
    from ..routing.router import Route
    from .app import Runtime

__all__ = ["Pipeline", "canonical_chunks"]

log = logging.getLogger("mini_llm.gateway")

_JSON = "application/json"
OVERHEAD = "x-mini-llm-overhead-ms"
COST = "x-mini-llm-cost-usd"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


class Pipeline:
    """Serves every dialect's endpoint with the runtime in force when the request began (a
    hot reload swaps `runtime`; requests under way keep theirs)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def handler(
        self, dialect: Dialect, endpoint: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, dialect, endpoint)

        return handle

    async def handle(
        self,
        request: web.Request,
        dialect: Dialect,
        endpoint: str,
    ) -> web.StreamResponse:
        started = time.monotonic()
        runtime = self.runtime
        rid = request_id(request)
        chain = runtime.policies
        info = (
            RequestInfo(rid, endpoint, dialect.name, request.headers, started=started)
            if chain
            else None
        )
        dispatched = 0.0
        served: Route | None = None
        if info is not None:
            info.keep_answer = chain.keep_answer
            # what the auth middleware found (`len`: nothing kept on the request, no lookup
            # that fails with a KeyError inside `get`)
            notes = request.get(NOTES) if len(request) else None
            if notes:
                info.notes.update(notes)
        try:
            raw = await runtime.body.read(request)
            call = dialect.parse(decode_object(raw), request.headers)
            call.request_id, call.raw = rid, raw
            if info is not None:
                info.call = call
                given = await chain.before(info)
                if given is not None:
                    answer = _given(call, given)
                    if answer.stream is None:
                        return _whole(runtime, dialect, call, answer, info, rid, started)
                    return await _stream(
                        runtime, request, dialect, call, answer, info, rid, started
                    )
            route = runtime.router.route(call.model)
            served = route.serving(call.operation, call.format)
            if served is None:
                local = dialect.local(call)
                if local is None:
                    names = dict.fromkeys(t.provider.name for g in route.groups for t in g.targets)
                    raise InvalidRequestError(
                        f"The model '{call.model}' cannot serve {call.operation.name} "
                        f"requests: no provider it routes to ({', '.join(names)}) has an "
                        f"endpoint for them. GET /v1/models lists each model's capabilities.",
                        param="model",
                        code="unsupported_operation",
                    )
                data, headers = local
                headers["x-request-id"] = rid
                headers["Content-Type"] = _JSON
                headers[OVERHEAD] = _ms(time.monotonic() - started)
                if info is not None:
                    info.status = 200
                    if info.keep_answer:
                        info.answer_body = data[: info.keep_answer]
                return web.Response(body=data, headers=headers)
            if not served.as_is:
                await dialect.prepare(call)  # what the canonical form needs from state
                call.canonical()  # a body that cannot be translated is a 400 before anything
            if info is not None and chain.wants_usage and call.stream:
                dialect.ask_usage(call)
            dispatched = time.monotonic()
            answer = await runtime.dispatcher.run(served, call)
            if answer.attempts > 1:  # failed attempts and backoffs were upstream time too
                answer.waited += answer.sent - dispatched
            if info is not None:
                info.target, info.attempts = answer.target, answer.attempts
            if answer.stream is None:
                return _whole(runtime, dialect, call, answer, info, rid, started)
            return await _stream(runtime, request, dialect, call, answer, info, rid, started)
        except GatewayError as e:
            response = error_response(e, dialect, rid, runtime.redact.scrub)
            if info is not None:
                info.status, info.error_code = e.http_status, e.code
                tried = (e.headers or {}).get("x-mini-llm-attempts")
                if tried and dispatched and info.target is None:  # tried, and failed
                    info.attempts = int(tried)
                    info.target = served.primary if served is not None and info.attempts else None
                response.headers.update(info.response_headers)
                if info.keep_answer and isinstance(response.body, bytes):
                    info.answer_body = response.body[: info.keep_answer]
            return _overhead(response, info, started, dispatched)
        except asyncio.CancelledError:
            if info is not None:
                info.stream_cancelled = True  # the client went away
            raise
        except Exception:
            log.exception("unexpected failure in %s", endpoint)
            if info is not None:
                info.status, info.error_code = 500, "internal_error"
            return _overhead(error_response(internal_error(), dialect, rid), info, started, 0.0)
        finally:
            if info is not None:
                chain.after(info)


def _given(call: Call, given: dict[str, Any] | Given) -> Answer:
    """The answer a policy gave (a cache hit): stored bytes go to a client of the canonical
    format as they are, without a decode and an encode."""
    if isinstance(given, dict):
        answer = Answer(None, False, completion=given)
    elif call.format is OPENAI and call.operation is CHAT and not call.stream:
        return Answer(None, True, given.data)
    else:
        answer = Answer(None, False, completion=given.completion)
    if call.stream:
        answer.stream = _nothing()
    return answer


def _overhead(
    response: web.Response, info: RequestInfo | None, started: float, dispatched: float
) -> web.Response:
    """An error answer's overhead: the time spent in the dispatcher counts as upstream's."""
    now = time.monotonic()
    overhead = now - started - (now - dispatched if dispatched else 0.0)
    response.headers[OVERHEAD] = _ms(overhead)
    if info is not None:
        info.overhead = overhead
    return response


def _headers(call: Call, answer: Answer, info: RequestInfo | None, rid: str) -> dict[str, str]:
    """The answer's own headers: where it came from, the request id, what policies add and
    what a translation dropped."""
    headers = answer.headers()
    headers["x-request-id"] = rid
    if info is not None and info.response_headers:
        headers.update(info.response_headers)
    if answer.target is not None and not answer.native and (call.dropped or answer.dropped):
        # what the translation could not carry to this target: said, never lost silently
        dropped = ",".join(dict.fromkeys((*call.dropped, *answer.dropped)))
        headers["x-mini-llm-dropped"] = dropped
        log.info("request %s to %s: dropped %s", rid, answer.target.label, dropped)
    return headers


def _whole(
    runtime: Runtime,
    dialect: Dialect,
    call: Call,
    answer: Answer,
    info: RequestInfo | None,
    rid: str,
    started: float,
) -> web.Response:
    """A whole answer (not a stream) as the client's response: nothing here awaits."""
    headers = _headers(call, answer, info, rid)
    data = runtime.redact.scrub(dialect.whole(call, answer))
    if info is not None:
        chain = runtime.policies
        wants_usage = chain.wants_usage
        info.status = 200
        if info.keep_answer:
            info.answer_body = data[: info.keep_answer]
        # a given answer's (a hit's) usage only when a policy reads it: it costs nothing
        if wants_usage and (answer.target is not None or chain.reads_usage):
            # the whole canonical answer, for a policy that stores it: only from upstream
            keep = chain.wants_completion and answer.target is not None
            read = WHOLE_USAGE_READERS.get(call.format) if answer.native and not keep else None
            if read is not None and answer.data:
                # a pass-through answer in the canonical format: its usage, nothing else decoded
                info.usage = read(answer.data)
            else:
                completion = _whole_completion(answer)
                usage = completion.get("usage") if completion is not None else None
                info.usage = Usage.from_canonical(usage) if isinstance(usage, dict) else None
                if keep:
                    info.completion = completion
        if wants_usage and chain.wants_cost:
            cost = cost_of(info, runtime.prices)
            if cost is not None:
                headers[COST] = f"{cost:.10f}".rstrip("0").rstrip(".")
    headers["Content-Type"] = _JSON
    overhead = time.monotonic() - started - answer.waited
    headers[OVERHEAD] = _ms(overhead)
    if info is not None:
        info.overhead = overhead
    return web.Response(body=data, headers=headers)


async def _stream(
    runtime: Runtime,
    request: web.Request,
    dialect: Dialect,
    call: Call,
    answer: Answer,
    info: RequestInfo | None,
    rid: str,
    started: float,
) -> web.StreamResponse:
    """A stream's response, written as its events come."""
    headers = _headers(call, answer, info, rid)
    chain = runtime.policies
    wants_usage = info is not None and chain.wants_usage
    # the whole canonical answer, for a policy that stores it: only one that came from upstream
    builder = (
        CompletionBuilder()
        if info is not None and chain.wants_completion and answer.target is not None
        else None
    )

    def stamp(headers: dict[str, str]) -> None:
        """The first event is in hand, the headers about to go: what the gateway added to
        the time to first byte."""
        now = time.monotonic()
        overhead = now - started - answer.waited
        headers[OVERHEAD] = _ms(overhead)
        if info is not None:  # the answer has begun: a 200, even if the client goes away
            info.first_byte, info.overhead, info.status = now, overhead, 200

    events = _events(dialect, call, answer, info if wants_usage else None, builder)
    response = await write_stream(
        request, events, dialect, headers=headers, scrub=runtime.redact.scrub, stamp=stamp
    )
    if info is not None:
        info.status = 200
    return response


def _events(
    dialect: Dialect,
    call: Call,
    answer: Answer,
    usage_for: RequestInfo | None,
    builder: CompletionBuilder | None = None,
) -> AsyncIterator[bytes]:
    """The stream the client gets; `usage_for` (when a policy wants usage) receives it, and
    its `completion` too when a `builder` is given and the stream ends complete."""
    assert answer.stream is not None
    if usage_for is not None and usage_for.keep_answer:
        usage_for.answer_text = []  # the text delivered, kept for a policy (bounded)
    if answer.native:
        stream = answer.stream
        if usage_for is not None:
            stream = _usage_tap(call, answer, stream, usage_for, builder)
        return dialect.passthrough(call, stream)
    direct = getattr(dialect, "direct_events", None)  # no canonical chunk for a plain read
    if usage_for is None and direct is not None:
        events = direct(call, answer)
        if events is not None:
            return events  # type: ignore[no-any-return]
    chunks = canonical_chunks(answer) if answer.endpoint else _replay(answer.completion)
    if usage_for is not None:
        chunks = _chunk_usage(chunks, usage_for, builder)
    return dialect.events(call, answer, chunks)


def _whole_completion(answer: Answer) -> dict[str, Any] | None:
    completion = answer.completion
    if completion is None:
        if answer.endpoint is None or answer.data is None:
            return None
        try:
            completion = answer.endpoint.parse(answer.data)
        except GatewayError:
            return None
    return completion


async def canonical_chunks(answer: Answer) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Canonical chunks from an upstream stream's bytes, through the format's decoder: one
    batch per upstream read, so the client gets one write for what came in one read."""
    assert answer.stream is not None and answer.endpoint is not None
    stream = answer.stream
    decoder = answer.endpoint.decoder()
    try:
        async for data in stream:
            batch = decoder.feed(data)
            if batch:
                yield batch
        batch = decoder.finish()
        while batch:
            yield batch
            batch = decoder.finish()
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def _chunk_usage(
    chunks: AsyncIterator[list[dict[str, Any]]],
    info: RequestInfo,
    builder: CompletionBuilder | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    async with aclosing(chunks):  # type: ignore[type-var]
        try:
            async for batch in chunks:
                count_text(batch, info)
                if builder is not None:
                    builder.feed(batch)
                yield batch
        except (GeneratorExit, asyncio.CancelledError):
            info.stream_cancelled = True  # closed before its end: the client went away
            raise
    if builder is not None:  # reached only when the stream ended as it should
        info.completion = builder.result()


async def _usage_tap(
    call: Call,
    answer: Answer,
    stream: AsyncIterator[bytes],
    info: RequestInfo,
    builder: CompletionBuilder | None = None,
) -> AsyncIterator[bytes]:
    """A native stream as it is, its usage read on the way (and, given a `builder`, its whole
    canonical answer): see `policies/stream_usage.py`."""
    assert answer.endpoint is not None
    tap = make_tap(call.format, answer.endpoint, info, builder)
    complete = False
    try:
        async for data in stream:
            tap.feed(data)
            yield data
        complete = True
    except (GeneratorExit, asyncio.CancelledError):
        info.stream_cancelled = True  # closed before its end: the client went away
        raise
    finally:
        tap.close(complete)
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def _nothing() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for data in nothing:
        yield data


async def _replay(
    completion: dict[str, Any] | None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """A whole canonical answer (one a policy gave) as one batch of stream chunks."""
    if completion is not None:
        yield answer_chunks(completion)

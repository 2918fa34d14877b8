"""OpenTelemetry traces (the optional extra `mini-llm[otel]`), on when an OTLP endpoint is set
(`[telemetry] otlp_endpoint`, `MINI_LLM_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`).

A SERVER span per request, continued from the client's W3C `traceparent`, carries the GenAI
semantic-convention attributes and the usage; a CLIENT span per upstream attempt (the
dispatcher's attempt hook) carries the provider and the outcome, and its `traceparent` goes
upstream. Spans leave in batches over OTLP/HTTP (protobuf) on the SDK's own thread. Nothing
here is imported or run when tracing is off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import UpstreamStatusError
from .policies.base import RequestInfo
from .policies.usage import settle
from .usage.prices import PriceTable

if TYPE_CHECKING:
    from .call import Call
    from .routing.router import Target

__all__ = ["OPERATIONS", "Telemetry"]

OPERATIONS = {"chat": "chat", "count_tokens": "count_tokens", "responses": "chat"}


class Telemetry:
    """The tracer provider and exporter of one process; `close` flushes what is pending."""

    def __init__(self, endpoint: str, service_name: str = "mini-llm") -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=url), schedule_delay_millis=1000)
        )
        self.tracer = self.provider.get_tracer("mini_llm")
        self.propagator = TraceContextTextMapPropagator()
        self.hook = _AttemptSpans(self)

    def policy(self, prices: PriceTable) -> TracePolicy:
        return TracePolicy(self, prices)

    def flush(self) -> None:
        self.provider.force_flush(5000)

    def close(self) -> None:
        self.provider.shutdown()


class TracePolicy:
    wants_usage = True

    def __init__(self, telemetry: Telemetry, prices: PriceTable) -> None:
        self.telemetry = telemetry
        self.prices = prices

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        from opentelemetry import context, trace

        telemetry = self.telemetry
        parent = telemetry.propagator.extract(info.headers or {})
        call = info.call
        operation = OPERATIONS.get(call.operation.name, call.operation.name) if call else "chat"
        span = telemetry.tracer.start_span(
            f"{operation} {info.model}", context=parent, kind=trace.SpanKind.SERVER
        )
        span.set_attribute("gen_ai.operation.name", operation)
        span.set_attribute("gen_ai.request.model", info.model)
        span.set_attribute("http.route", info.endpoint)
        span.set_attribute("mini_llm.request_id", info.request_id)
        span.set_attribute("mini_llm.dialect", info.dialect)
        if call is not None:
            span.set_attribute("gen_ai.request.stream", call.stream)
        token = context.attach(trace.set_span_in_context(span))
        info.trace = (span, token)
        return None

    def after(self, info: RequestInfo) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        if info.trace is None:
            return
        span, token = info.trace
        info.trace = None
        settle(info, self.prices)
        target = info.target
        if target is not None:
            span.set_attribute("gen_ai.provider.name", target.provider.name)
            span.set_attribute("gen_ai.response.model", target.model)
        span.set_attribute("http.response.status_code", info.status)
        span.set_attribute("mini_llm.attempts", info.attempts)
        usage = info.usage
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_input_tokens)
            span.set_attribute("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens)
            span.set_attribute("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens)
            span.set_attribute("mini_llm.usage.exact", usage.exact)
        if info.cost is not None:
            span.set_attribute("mini_llm.cost_usd", info.cost)
        if info.first_byte is not None:
            span.set_attribute("mini_llm.ttft_s", info.first_byte - info.started)
        if info.stream_cancelled:
            span.set_attribute("mini_llm.cancelled", True)
        if info.status >= 400:
            span.set_attribute("error.type", info.error_code or str(info.status))
            span.set_status(Status(StatusCode.ERROR, info.error_code or ""))
        span.end()
        with contextlib.suppress(ValueError):  # detached in another context: nothing to undo
            context.detach(token)


class _AttemptSpans:
    """The dispatcher's attempt hook: a CLIENT span per attempt, its traceparent sent up."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def started(self, target: Target, call: Call) -> tuple[Any, Mapping[str, str] | None]:
        from opentelemetry import trace

        span = self.telemetry.tracer.start_span(
            f"{OPERATIONS.get(call.operation.name, call.operation.name)} {target.model}",
            kind=trace.SpanKind.CLIENT,
        )
        span.set_attribute("gen_ai.operation.name", OPERATIONS.get(call.operation.name, "chat"))
        span.set_attribute("gen_ai.provider.name", target.provider.name)
        span.set_attribute("gen_ai.request.model", target.model)
        carrier: dict[str, str] = {}
        self.telemetry.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return span, carrier

    def ended(self, handle: Any, target: Target, error: BaseException | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if error is not None:
            if isinstance(error, UpstreamStatusError):
                handle.set_attribute("http.response.status_code", error.upstream_status)
            handle.set_attribute("error.type", type(error).__name__)
            handle.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        handle.end()


class AttemptHooks:
    """Several attempt hooks as one."""

    def __init__(self, hooks: list[Any]) -> None:
        self.hooks = hooks

    def started(self, target: Target, call: Call) -> tuple[Any, Mapping[str, str] | None]:
        handles = []
        headers: dict[str, str] = {}
        for hook in self.hooks:
            handle, extra = hook.started(target, call)
            handles.append(handle)
            if extra:
                headers.update(extra)
        return handles, headers or None

    def ended(self, handle: Any, target: Target, error: BaseException | None) -> None:
        for hook, one in zip(self.hooks, handle, strict=True):
            hook.ended(one, target, error)

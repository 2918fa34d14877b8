"""OpenTelemetry: a span per request continued from the client's traceparent, a child span per
upstream attempt whose traceparent goes upstream, GenAI attributes and the usage; checked by an
OTLP/HTTP receiver in the test that decodes what arrives (protobuf)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from mini_llm.gateway.app import GATEWAY

from .conftest import GatewayFactory
from .harness import LoopThread, RunningApp, http
from .upstreams import openai_upstream as oa
from .upstreams.openai_upstream import OpenAIUpstream
from .usage_upstreams import OPENAI_COST, openai_rich

pytest.importorskip("opentelemetry.sdk")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Any] = []

    async def traces(self, request: web.Request) -> web.Response:
        message = trace_service.ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return web.Response(
            body=trace_service.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        return app


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def test_spans_carry_the_usage_and_the_trace_goes_upstream(
    loop_thread: LoopThread,
    make_gateway: GatewayFactory,
    openai_upstream_url: str,
    openai_upstream: OpenAIUpstream,
) -> None:
    receiver = Receiver()
    collector = RunningApp(loop_thread, receiver.app())
    try:
        gateway = make_gateway(
            {
                "OPENAI_BASE_URL": openai_upstream_url,
                "OPENAI_API_KEY": "sk-trace-test-openai",
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            }
        )
        openai_upstream.push(oa.error(503, "busy"), openai_rich())
        body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
        status, _, _ = http(
            "POST",
            gateway.url + "/v1/chat/completions",
            json.dumps(body).encode(),
            {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"},
        )
        assert status == 200
        telemetry = gateway.app[GATEWAY].observers.telemetry
        assert telemetry is not None
        telemetry.flush()
    finally:
        collector.stop()

    server = [s for s in receiver.spans if s.kind == s.SPAN_KIND_SERVER]
    clients = [s for s in receiver.spans if s.kind == s.SPAN_KIND_CLIENT]
    assert len(server) == 1 and len(clients) == 2  # one per attempt: 503, then the answer
    (span,) = server
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == CLIENT_SPAN
    seen = attributes(span)
    assert seen["gen_ai.operation.name"] == "chat"
    assert seen["gen_ai.provider.name"] == "openai"
    assert seen["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert seen["gen_ai.response.model"] == "gpt-4o-mini"
    assert seen["gen_ai.usage.input_tokens"] == 1200  # every prompt token, as OpenAI counts
    assert seen["gen_ai.usage.output_tokens"] == 300
    assert seen["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert seen["gen_ai.usage.reasoning.output_tokens"] == 100
    assert seen["mini_llm.cost_usd"] == pytest.approx(OPENAI_COST)
    assert seen["mini_llm.attempts"] == 2
    for child in clients:
        assert child.trace_id.hex() == TRACE_ID and child.parent_span_id == span.span_id
    failed = next(c for c in clients if attributes(c).get("http.response.status_code") == 503)
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    # each attempt told the upstream its own span as the parent
    sent = [r.headers.get("traceparent", "") for r in openai_upstream.requests]
    assert [t.split("-")[1] for t in sent] == [TRACE_ID, TRACE_ID]
    assert {t.split("-")[2] for t in sent} == {c.span_id.hex() for c in clients}

"""The ledger and the metrics on every path: pass-through and translated, whole and streamed,
each client dialect (chat, messages, responses); a cancelled stream; an upstream error; a store
outage. Every figure is compared with what the mock upstream reported, exactly."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from mini_llm.canonical import Usage
from mini_llm.gateway.app import GATEWAY
from mini_llm.policies.usage import estimate_input

from .conftest import GatewayFactory
from .harness import RunningApp, http
from .upstreams import openai_upstream as oa
from .upstreams.anthropic_upstream import AnthropicUpstream
from .upstreams.openai_upstream import OpenAIUpstream
from .usage_upstreams import (
    ANTHROPIC_COST,
    ANTHROPIC_EXPECTED,
    OPENAI_COST,
    OPENAI_EXPECTED,
    anthropic_rich,
    openai_rich,
)

OPENAI_MODEL = "openai/gpt-4o-mini"
# what the mock OpenAI /responses reports (tests/upstreams/responses_upstream.py: USAGE)
RESPONSES_EXPECTED = Usage(input_tokens=7, output_tokens=4, cached_input_tokens=2)
RESPONSES_COST = (7 * 0.15 + 2 * 0.075 + 4 * 0.60) / 1e6
CLAUDE_MODEL = "anthropic/claude-sonnet-4-5"


@pytest.fixture
def usage_gateway(
    make_gateway: GatewayFactory,
    openai_upstream_url: str,
    anthropic_upstream_url: str,
    tmp_path: Path,
) -> RunningApp:
    return make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-usage-test-openai",
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-usage-test",
            "MINI_LLM_DATA_DIR": str(tmp_path / "data"),
        }
    )


def records(gateway: RunningApp, limit: int = 100) -> list[dict[str, Any]]:
    """The ledger's records, oldest first (the admin route flushes the queue first)."""
    status, _, data = http("GET", gateway.url + f"/admin/usage?by=request&limit={limit}")
    assert status == 200, data
    return list(reversed(json.loads(data)["rows"]))


def usage_of(record: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=record["input_tokens"],
        output_tokens=record["output_tokens"],
        cached_input_tokens=record["cached_input_tokens"],
        cache_write_tokens=record["cache_write_tokens"],
        reasoning_tokens=record["reasoning_tokens"],
        cache_write_1h_tokens=record["cache_write_1h_tokens"],
        exact=record["exact"],
    )


def scrape(gateway: RunningApp) -> dict[str, float]:
    """`{series: value}`, each series written `name{a="x",b="y"}` with its labels in order."""
    status, headers, data = http("GET", gateway.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return parse_metrics(data.decode())


def parse_metrics(text: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            if labels:
                pairs = sorted(labels.rstrip("}").split('",'))
                series = name + "{" + '",'.join(p.rstrip('"') for p in pairs) + '"}'
            figures[series] = float(value)
    return figures


def series(name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if labels else name


def _drive(
    gateway: RunningApp,
    openai_upstream: OpenAIUpstream,
    anthropic_upstream: AnthropicUpstream,
) -> list[tuple[str, str, bool]]:
    """Every dialect × (pass-through, translated) × (whole, stream); returns what each was."""
    oa_client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    an_client = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    done: list[tuple[str, str, bool]] = []
    messages: Any = [{"role": "user", "content": "what did it cost?"}]
    for model in (OPENAI_MODEL, CLAUDE_MODEL):
        for stream in (False, True):
            (openai_upstream if model == OPENAI_MODEL else anthropic_upstream).push(
                openai_rich() if model == OPENAI_MODEL else anthropic_rich()
            )
            if stream:
                chunks = list(
                    oa_client.chat.completions.create(model=model, messages=messages, stream=True)
                )
                assert all(c.usage is None for c in chunks)  # asked upstream, not shown
            else:
                reply = oa_client.chat.completions.create(model=model, messages=messages)
                assert reply.choices[0].message.content == "rich answer"
            done.append(("/v1/chat/completions", model, stream))

            (openai_upstream if model == OPENAI_MODEL else anthropic_upstream).push(
                openai_rich() if model == OPENAI_MODEL else anthropic_rich()
            )
            if stream:
                with an_client.messages.stream(
                    model=model, max_tokens=50, messages=messages
                ) as events:
                    events.get_final_message()
            else:
                an_client.messages.create(model=model, max_tokens=50, messages=messages)
            done.append(("/v1/messages", model, stream))

            if model == CLAUDE_MODEL:  # OpenAI's own /responses answers with RESPONSES_USAGE
                anthropic_upstream.push(anthropic_rich())
            if stream:
                with oa_client.responses.stream(model=model, input="what did it cost?") as events:
                    events.get_final_response()
            else:
                oa_client.responses.create(model=model, input="what did it cost?")
            done.append(("/v1/responses", model, stream))
    oa_client.close()
    an_client.close()
    return done


def _expected(endpoint: str, model: str) -> tuple[Usage, float]:
    if model == CLAUDE_MODEL:
        return ANTHROPIC_EXPECTED, ANTHROPIC_COST
    if endpoint == "/v1/responses":
        return RESPONSES_EXPECTED, RESPONSES_COST
    return OPENAI_EXPECTED, OPENAI_COST


def test_every_path_records_the_upstream_figures_exactly(
    usage_gateway: RunningApp,
    openai_upstream: OpenAIUpstream,
    anthropic_upstream: AnthropicUpstream,
) -> None:
    done = _drive(usage_gateway, openai_upstream, anthropic_upstream)
    rows = records(usage_gateway)
    assert len(rows) == len(done) == 12
    for row, (endpoint, model, stream) in zip(rows, done, strict=True):
        where = f"{endpoint} {model} stream={stream}"
        expected, cost = _expected(endpoint, model)
        assert usage_of(row) == expected, where
        assert row["cost_usd"] == pytest.approx(cost, rel=1e-12), where
        assert (row["endpoint"], row["model"], row["status"]) == (endpoint, model, 200), where
        assert f"{row['provider']}/{row['served_model']}" == model
        assert row["attempts"] == 1 and row["error_code"] is None
        assert row["exact"] and not row["cancelled"] and not row["cache_hit"]
        assert row["latency_ms"] > 0 and row["overhead_ms"] is not None
        assert row["overhead_ms"] < row["latency_ms"]
        assert (row["ttft_ms"] is not None) == stream, where
        assert row["key_id"] is None

    # Prometheus sees the same figures
    figures = scrape(usage_gateway)
    for model in (OPENAI_MODEL, CLAUDE_MODEL):
        provider, _, name = model.partition("/")
        served = [_expected(endpoint, m) for endpoint, m, _ in done if m == model]
        for kind, field in (
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("cached_input", "cached_input_tokens"),
            ("cache_write", "cache_write_tokens"),
            ("reasoning", "reasoning_tokens"),
        ):
            metric = series("mini_llm_tokens_total", provider=provider, model=name, type=kind)
            assert figures.get(metric, 0) == sum(getattr(u, field) for u, _ in served), metric
        total = sum(c for _, c in served)
        spent = series("mini_llm_cost_usd_total", provider=provider, model=name)
        assert figures[spent] == pytest.approx(total)
        attempts = series("mini_llm_upstream_attempts_total", provider=provider, outcome="ok")
        assert figures[attempts] == 6
    requests = sum(v for k, v in figures.items() if k.startswith("mini_llm_requests_total{"))
    assert requests == 12
    streamed = series(
        "mini_llm_time_to_first_token_seconds_count",
        endpoint="/v1/chat/completions",
        provider="openai",
        model="gpt-4o-mini",
    )
    assert figures[streamed] == 1
    assert figures["mini_llm_in_flight_requests"] == 0
    assert figures["mini_llm_usage_records_dropped_total"] == 0


def test_headers_carry_cost_and_overhead(
    usage_gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(openai_rich())
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "x"}]}
    status, headers, _ = http(
        "POST", usage_gateway.url + "/v1/chat/completions", json.dumps(body).encode()
    )
    assert status == 200
    assert float(headers["x-mini-llm-cost-usd"]) == pytest.approx(OPENAI_COST)
    assert 0 <= float(headers["x-mini-llm-overhead-ms"]) < 1000
    openai_upstream.push(openai_rich())
    status, headers, _ = http(
        "POST",
        usage_gateway.url + "/v1/chat/completions",
        json.dumps({**body, "stream": True}).encode(),
    )
    assert status == 200 and "x-mini-llm-cost-usd" not in headers  # streams: in the ledger
    assert float(headers["x-mini-llm-overhead-ms"]) >= 0
    body["model"] = "nowhere/at-all"  # an error answer carries the overhead too
    status, headers, _ = http(
        "POST", usage_gateway.url + "/v1/chat/completions", json.dumps(body).encode()
    )
    assert status == 404 and float(headers["x-mini-llm-overhead-ms"]) >= 0


def test_an_unpriced_model_costs_null_and_is_listed(
    usage_gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(openai_rich())
    body = {"model": "openai/my-finetune", "messages": [{"role": "user", "content": "x"}]}
    status, headers, _ = http(
        "POST", usage_gateway.url + "/v1/chat/completions", json.dumps(body).encode()
    )
    assert status == 200 and "x-mini-llm-cost-usd" not in headers
    (row,) = records(usage_gateway)
    assert row["cost_usd"] is None and row["input_tokens"] == 200
    status, _, data = http("GET", usage_gateway.url + "/admin/usage?by=model&since=1h")
    report = json.loads(data)
    assert report["unpriced_models"] == ["openai/my-finetune"]
    assert report["rows"][0]["cost_usd"] is None and report["rows"][0]["unpriced_requests"] == 1
    # not configured: grouped as `other` in the metrics
    figures = scrape(usage_gateway)
    assert any('model="other"' in name for name in figures)
    assert not any("my-finetune" in name for name in figures)


def test_an_upstream_error_is_recorded(
    usage_gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(oa.error(400, "bad thing", code="bad_thing"))
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "x"}]}
    status, _, _ = http(
        "POST", usage_gateway.url + "/v1/chat/completions", json.dumps(body).encode()
    )
    assert status == 400
    (row,) = records(usage_gateway)
    assert (row["status"], row["error_code"], row["attempts"]) == (400, "bad_thing", 1)
    assert usage_of(row) == Usage() and row["cost_usd"] is None
    figures = scrape(usage_gateway)
    attempts = series("mini_llm_upstream_attempts_total", provider="openai", outcome="400")
    assert figures[attempts] == 1
    name = series(
        "mini_llm_requests_total",
        endpoint="/v1/chat/completions",
        provider="openai",
        model="gpt-4o-mini",
        status="400",
    )
    assert figures[name] == 1


def test_a_cancelled_stream_records_what_was_delivered(
    usage_gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(openai_rich(pieces=200, delay=0.01))
    body = {
        "model": OPENAI_MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "a prompt of forty characters, or about.."}],
    }
    data = json.dumps(body).encode()
    port = int(usage_gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        got = b""
        while got.count(b"abcd") < 5:
            got += sock.recv(65536)
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        rows = records(usage_gateway)
        time.sleep(0.05)
    (row,) = rows
    assert row["cancelled"] and not row["exact"] and row["status"] == 200
    # no usage came: estimated from the prompt and what was delivered (4 chars a token)
    assert row["input_tokens"] == estimate_input(body) == 11  # 44 characters of text
    assert 5 <= row["output_tokens"] < 200
    assert row["cost_usd"] == pytest.approx(
        (row["input_tokens"] * 0.15 + row["output_tokens"] * 0.60) / 1e6
    )
    assert row["ttft_ms"] is not None


def test_a_store_outage_drops_records_and_never_blocks(
    make_gateway: GatewayFactory, openai_upstream_url: str, openai_upstream: OpenAIUpstream
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    gateway = make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-usage-test-openai",
            "MINI_LLM_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{closed}/nothing",
            "MINI_LLM_USAGE_QUEUE": "100",
        }
    )
    body = json.dumps({"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "x"}]})
    started = time.monotonic()
    for _ in range(130):
        status, _, _ = http("POST", gateway.url + "/v1/chat/completions", body.encode(), timeout=5)
        assert status == 200
    assert time.monotonic() - started < 30
    figures = scrape(gateway)
    assert figures["mini_llm_usage_records_dropped_total"] == 30
    ledger = gateway.app[GATEWAY].ledger
    assert ledger is not None and len(ledger.queue) == 100
    status, _, _ = http("GET", gateway.url + "/admin/usage")
    assert status == 503

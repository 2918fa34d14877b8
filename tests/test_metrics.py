"""GET /metrics: Prometheus text, every family named in the issue, bounded labels, off when
asked, and with `--workers 2` the figures of every worker."""

from __future__ import annotations

import json
import time

from .conftest import GatewayFactory
from .harness import clean_env, http, start_serve
from .test_usage_paths import parse_metrics, series

FAMILIES = (
    "mini_llm_requests_total",
    "mini_llm_request_duration_seconds_bucket",
    "mini_llm_time_to_first_token_seconds_count",
    "mini_llm_tokens_total",
    "mini_llm_upstream_attempts_total",
    "mini_llm_in_flight_requests",
    "mini_llm_usage_records_dropped_total",
    "mini_llm_rate_limited_total",
)


def _post(url: str, model: str, stream: bool = False) -> int:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    status, _, _ = http("POST", url + "/v1/chat/completions", json.dumps(body).encode())
    return status


def test_every_family_and_bounded_labels(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({"MINI_LLM_RETRY_ATTEMPTS": "1"})
    assert _post(gateway.url, "mock/echo") == 200
    assert _post(gateway.url, "mock/echo", stream=True) == 200
    assert _post(gateway.url, "mock/error-429") == 429
    assert _post(gateway.url, "nowhere/at-all") == 404
    status, headers, data = http("GET", gateway.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    text = data.decode()
    for family in FAMILIES:
        assert family in text, family
    figures = parse_metrics(text)
    ok = series(
        "mini_llm_requests_total",
        endpoint="/v1/chat/completions",
        provider="mock",
        model="echo",
        status="200",
    )
    assert figures[ok] == 2
    assert figures[series("mini_llm_rate_limited_total", reason="upstream")] == 1
    unrouted = series(
        "mini_llm_requests_total",
        endpoint="/v1/chat/completions",
        provider="none",
        model="none",
        status="404",
    )
    assert figures[unrouted] == 1
    assert "nowhere" not in text  # a name the client made up never becomes a label


def test_metrics_can_be_turned_off(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({"MINI_LLM_METRICS": "false"})
    assert http("GET", gateway.url + "/metrics")[0] == 404


def test_workers_metrics_cover_every_worker() -> None:
    served = start_serve("--port", "0", "--workers", "2", env=clean_env(MINI_LLM_USAGE="false"))
    try:
        sent = 40
        for _ in range(sent):  # new connections: the kernel spreads them over both workers
            assert _post(served.url, "mock/echo") == 200
        time.sleep(1.5)  # each worker publishes its figures every second
        name = series(
            "mini_llm_requests_total",
            endpoint="/v1/chat/completions",
            provider="mock",
            model="echo",
            status="200",
        )
        for _ in range(4):  # whichever worker answers the scrape, it counts them all
            figures = parse_metrics(http("GET", served.url + "/metrics")[2].decode())
            assert figures[name] == sent
    finally:
        served.proc.terminate()
        served.proc.wait(30)
        if served.proc.stdout is not None:
            served.proc.stdout.close()

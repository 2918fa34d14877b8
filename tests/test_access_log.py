"""The access log: one line per request; with `log_bodies`, the request's and the answer's
bodies (a stream's text as delivered), truncated and redacted; JSON lines written bare."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mini_llm.canonical import Usage
from mini_llm.logs import Redactor
from mini_llm.policies import access_log
from mini_llm.policies.access_log import AccessLog, use_json_lines
from mini_llm.policies.base import PolicyChain, RequestInfo
from mini_llm.usage.prices import PriceTable

from .conftest import GatewayFactory
from .harness import http

KEY = "sk-test-secret-key-0123456789"


@pytest.fixture
def text_lines(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[int], list[str]]]:
    """The access log's text lines logged so far."""
    logger = logging.getLogger("mini_llm")
    propagated = logger.propagate
    logger.propagate = True

    def lines(count: int) -> list[str]:
        """Once `count` are there (a stream's line follows its last byte)."""
        deadline = time.monotonic() + 10
        while True:
            found = [r.getMessage() for r in caplog.records if r.name == "mini_llm.requests"]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    try:
        with caplog.at_level(logging.INFO, logger="mini_llm.requests"):
            yield lines
    finally:
        logger.propagate = propagated


def _chat(gateway_url: str, content: str, stream: bool = False) -> bytes:
    body: dict[str, Any] = {
        "model": "mock/echo",
        "messages": [{"role": "user", "content": content}],
    }
    if stream:
        body["stream"] = True
    status, _, data = http("POST", gateway_url + "/v1/chat/completions", json.dumps(body).encode())
    assert status == 200
    return data


def test_answer_bodies_are_logged_truncated_and_redacted(
    make_gateway: GatewayFactory, text_lines: Callable[[int], list[str]]
) -> None:
    gateway = make_gateway(
        {
            "MINI_LLM_LOG_LEVEL": "info",
            "MINI_LLM_LOG_BODIES": "true",
            "MINI_LLM_LOG_BODY_MAX_BYTES": "300",
        }
    )
    whole = _chat(gateway.url, f"whole please, my key is {KEY}")
    streamed = _chat(gateway.url, f"stream please, my key is {KEY}", stream=True)
    _chat(gateway.url, "x" * 2000)
    assert KEY in whole.decode() and b"data: " in streamed  # the mock echoes the key back
    lines = text_lines(3)
    assert len(lines) == 3
    first, second, third = lines
    # the whole answer's body, as the client got it, its key masked
    assert "answer={" in first and '"chat.completion"' in first
    assert "whole please" in first.split("answer=")[1]
    assert KEY not in first and "…6789" in first
    # a stream: the text delivered, not the events
    answer = second.split("answer=")[1]
    assert answer.startswith("stream please") and "data:" not in answer
    assert KEY not in second
    # each body cut at body_max_bytes
    body, answer = third.split(" body=")[1].split(" answer=")
    assert len(body) == 300 and len(answer) == 300
    # an error answer is the answer too
    missing = {"model": "nowhere/at-all", "messages": [{"role": "user", "content": "x"}]}
    status, _, _ = http("POST", gateway.url + "/v1/chat/completions", json.dumps(missing).encode())
    assert status == 404
    error = text_lines(4)[3]
    assert "status=404" in error and "does not exist" in error.split(" answer=")[1]


def test_no_bodies_unless_asked(
    make_gateway: GatewayFactory, text_lines: Callable[[int], list[str]]
) -> None:
    gateway = make_gateway({"MINI_LLM_LOG_LEVEL": "info"})
    _chat(gateway.url, "nothing to keep")
    _chat(gateway.url, "nothing to keep", stream=True)
    lines = text_lines(2)
    assert len(lines) == 2
    assert not any("body=" in line or "answer=" in line for line in lines)


def _info(status: int = 200) -> RequestInfo:
    info = RequestInfo("req_1", "/v1/chat/completions", "openai.chat")
    info.status = status
    info.usage = Usage(input_tokens=12, output_tokens=3)
    info.overhead = 0.0002
    return info


def test_json_lines_go_bare_to_the_stream_one_write_per_loop_turn() -> None:
    out = io.StringIO()
    writes: list[str] = []
    write = out.write

    def counted(text: str) -> int:
        writes.append(text)
        return write(text)

    out.write = counted  # type: ignore[method-assign]
    logger = logging.getLogger("mini_llm.requests")
    level = logger.level
    logger.setLevel(logging.INFO)
    use_json_lines(True)
    try:
        (handler,) = logger.handlers
        handler.setStream(out)  # type: ignore[attr-defined]
        policy = AccessLog(PriceTable({}), json_lines=True, log_bodies=True, redact=Redactor([KEY]))

        async def requests() -> None:
            for n in range(3):
                info = _info()
                info.keep_answer = PolicyChain([policy]).keep_answer
                assert info.keep_answer == 4096
                info.answer_body = f'{{"n": {n}, "key": "{KEY}"}}'.encode()
                policy.after(info)
            assert out.getvalue() == ""  # not before the loop's turn ends
            await asyncio.sleep(0)

        asyncio.run(requests())
        policy.after(_info(502))  # no loop running: written at once
    finally:
        use_json_lines(False)
        logger.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(writes) == 2 and len(lines) == 4
    assert [json.loads(line["response_body"])["n"] for line in lines[:3]] == [0, 1, 2]
    assert all(KEY not in line["response_body"] for line in lines[:3])
    first = lines[0]
    assert first["request_id"] == "req_1" and first["status"] == 200
    assert first["input_tokens"] == 12 and first["output_tokens"] == 3
    assert first["overhead_ms"] == 0.2 and first["exact"] is True
    assert "request_body" not in first  # no call: no request body
    assert lines[3]["status"] == 502 and "response_body" not in lines[3]
    assert policy.fields(_info()).keys() == {
        k for k in lines[3] if k not in ("request_body", "response_body")
    }


def test_json_lines_through_logging_when_the_logger_is_not_bare(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = AccessLog(PriceTable({}), json_lines=True)
    assert access_log._bare_stream() is None  # propagating to the root: through logging
    with caplog.at_level(logging.INFO, logger="mini_llm.requests"):
        policy.after(_info())
    (record,) = [r for r in caplog.records if r.name == "mini_llm.requests"]
    assert json.loads(record.getMessage())["status"] == 200


def test_gateway_keys_and_a_secret_across_the_cut_are_masked() -> None:
    from mini_llm.logs import Redactor

    master = "master-key-for-the-log-test-0123456789"
    gateway_key = "mk-" + "A1b2C3d4" * 5
    signing = "ms-" + "Z9y8X7w6" * 5
    policy = AccessLog(
        PriceTable({}), log_bodies=True, redact=Redactor([master]), body_max_bytes=40
    )
    for secret in (master, gateway_key, signing):
        body = ("x" * 30 + secret + " and more").encode()  # the cut at 40 halves the secret
        logged = policy._text(body)
        assert secret[:12] not in logged and secret[-12:] not in logged, logged
        assert len(logged.encode()) <= 40

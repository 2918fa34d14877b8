"""Stored responses across gateway processes (`python -m mini_llm serve`), driven by the official
`openai` client: on the embedded default (a SQLite file) a conversation survives a restart; on
PostgreSQL two instances share them at once (create through one, continue, read and delete
through the other), each gateway key sees only its own, and expired ones are gone."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .access_helpers import MASTER, new_database, postgres_url, shared_service
from .harness import Served, clean_env, http, start_serve
from .upstreams.anthropic_upstream import AnthropicUpstream

__all__ = ["postgres_url"]

MODEL = "anthropic/claude-sonnet-4-5"


class Instances:
    """`serve` processes started with one environment; each stopped by its pid at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: list[Served] = []

    def start(self) -> Served:
        served = start_serve("--port", "0", env=self.env)
        self.running.append(served)
        return served

    def stop(self, served: Served) -> None:
        if served.proc.poll() is None:
            served.proc.send_signal(signal.SIGTERM)
            try:
                served.proc.wait(20)
            except subprocess.TimeoutExpired:
                served.proc.kill()
                served.proc.wait(5)
        if served.proc.stdout is not None:
            served.proc.stdout.close()

    def close(self) -> None:
        for served in self.running:
            self.stop(served)


def _env(anthropic_url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        ANTHROPIC_BASE_URL=anthropic_url,
        ANTHROPIC_API_KEY="sk-ant-store-test-4444",
        MINI_LLM_LOG_LEVEL="warning",
        MINI_LLM_RETRY_ATTEMPTS="1",
        **extra,
    )


@pytest.fixture
def instances() -> Iterator[list[Instances]]:
    made: list[Instances] = []
    yield made
    for group in made:
        group.close()


def _client(served: Served, key: str = "no-auth") -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)


def _texts(body: dict[str, Any]) -> list[str]:
    """Every text the upstream got in its messages, in order."""
    found: list[str] = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            found.append(content)
        else:
            found.extend(block["text"] for block in content if block.get("type") == "text")
    return found


def test_a_conversation_survives_a_restart_on_the_sqlite_file(
    tmp_path: Path,
    anthropic_upstream: AnthropicUpstream,
    anthropic_upstream_url: str,
    instances: list[Instances],
) -> None:
    group = Instances(_env(anthropic_upstream_url, MINI_LLM_DATA_DIR=str(tmp_path)))
    instances.append(group)
    first = group.start()
    made = _client(first).responses.create(
        model=MODEL, input="remember the word tangerine", store=True
    )
    group.stop(first)
    assert (tmp_path / "mini-llm.db").exists()

    second = group.start()
    client = _client(second)
    assert client.responses.retrieve(made.id).output_text == made.output_text
    items = client.responses.input_items.list(made.id)
    assert [item.type for item in items.data] == ["message"]
    follow = client.responses.create(
        model=MODEL, input="which word was it?", previous_response_id=made.id
    )
    assert follow.status == "completed"
    texts = _texts(anthropic_upstream.requests[-1].body)
    assert texts[0] == "remember the word tangerine"
    assert texts[-1] == "which word was it?"
    assert made.output_text in texts[1:-1]  # the first answer, as the assistant's turn


@pytest.fixture
def shared_env(
    request: pytest.FixtureRequest, tmp_path: Path, anthropic_upstream_url: str
) -> dict[str, str]:
    database = new_database(shared_service(request, "postgres_url"))
    return _env(
        anthropic_upstream_url,
        MINI_LLM_DATABASE_URL=database,
        MINI_LLM_DATA_DIR=str(tmp_path),
        MINI_LLM_MASTER_KEY=MASTER,
    )


def _new_key(served: Served) -> str:
    status, _, raw = http(
        "POST",
        served.url + "/admin/keys",
        json.dumps({"name": "responses"}).encode(),
        {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
    )
    assert status == 201, raw
    return str(json.loads(raw)["key"])


def test_two_instances_share_stored_responses_per_key(
    shared_env: dict[str, str],
    anthropic_upstream: AnthropicUpstream,
    instances: list[Instances],
) -> None:
    group = Instances(shared_env)
    instances.append(group)
    one, two = group.start(), group.start()
    alice, bob = _new_key(one), _new_key(one)
    time.sleep(1.0)  # a key made on one instance is known to the other within a second

    made = _client(one, alice).responses.create(model=MODEL, input="the colour is teal")
    with _client(one, alice).responses.stream(model=MODEL, input="streamed note") as stream:
        streamed = stream.get_final_response()

    # at once, through the other instance: the answers were written before they ended
    other = _client(two, alice)
    assert other.responses.retrieve(made.id).output_text == made.output_text
    assert other.responses.retrieve(streamed.id).output_text == streamed.output_text
    assert other.responses.input_items.list(made.id).data[0].type == "message"
    follow = other.responses.create(model=MODEL, input="what colour?", previous_response_id=made.id)
    assert _texts(anthropic_upstream.requests[-1].body)[0] == "the colour is teal"
    assert _client(one, alice).responses.retrieve(follow.id).previous_response_id == made.id

    # another key, or the master key, sees none of them
    for key in (bob, MASTER):
        with pytest.raises(openai.NotFoundError):
            _client(two, key).responses.retrieve(made.id)
        with pytest.raises(openai.BadRequestError) as refused:
            _client(one, key).responses.create(
                model=MODEL, input="again", previous_response_id=made.id
            )
        assert refused.value.code == "previous_response_not_found"
        with pytest.raises(openai.NotFoundError):
            _client(one, key).responses.delete(made.id)

    _client(two, alice).responses.delete(made.id)
    for served in (one, two):
        with pytest.raises(openai.NotFoundError):
            _client(served, alice).responses.retrieve(made.id)
    assert _client(one, alice).responses.retrieve(streamed.id).id == streamed.id


def test_expired_responses_are_gone_on_every_instance(
    shared_env: dict[str, str], instances: list[Instances]
) -> None:
    group = Instances({**shared_env, "MINI_LLM_RESPONSES_TTL": "1.5"})
    instances.append(group)
    one, two = group.start(), group.start()
    made = _client(one, MASTER).responses.create(model=MODEL, input="short lived")
    assert _client(two, MASTER).responses.retrieve(made.id).id == made.id
    time.sleep(2.0)
    for served in (one, two):
        with pytest.raises(openai.NotFoundError):
            _client(served, MASTER).responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError) as refused:
        _client(two, MASTER).responses.create(
            model=MODEL, input="still there?", previous_response_id=made.id
        )
    assert refused.value.code == "previous_response_not_found"

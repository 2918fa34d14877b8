"""A client generated from the gateway's own `/openapi.json` works against it unchanged.

`openapi-python-client` (a maintained generator, from PyPI) reads the document served by a
running gateway on the mock provider, once per session into a temp dir; the generated package
is imported as it is and called: the model list, a chat completion, embeddings, an Anthropic
message, a Gemini generateContent, and errors parsed into the documented error bodies. The
generator must take the whole document without a warning: an operation or schema it drops is
a defect of the document (`gateway/openapi.py`), not of the client.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .harness import LoopThread, RunningApp, gateway_settings, http, start_gateway

PACKAGE = "mini_llm_generated_client"


class Generated:
    """The generated package's modules, found by their dotted names under `PACKAGE`."""

    def __init__(self, url: str) -> None:
        client = importlib.import_module(PACKAGE)
        self.client = client.AuthenticatedClient(base_url=url, token="sk-any", timeout=15.0)

    def api(self, dotted: str) -> ModuleType:
        """A generated operation's module (`openai.list_models`)."""
        return importlib.import_module(f"{PACKAGE}.api.{dotted}")

    def model(self, module: str) -> Any:
        """A generated model class, by its module (`chat_request` → `ChatRequest`)."""
        name = "".join(part.capitalize() for part in module.split("_"))
        found = importlib.import_module(f"{PACKAGE}.models.{module}")
        exact = {k.lower(): v for k, v in vars(found).items() if isinstance(v, type)}
        return exact[name.lower()]


@pytest.fixture(scope="module")
def gateway(loop_thread: LoopThread) -> Iterator[RunningApp]:
    running = start_gateway(loop_thread, gateway_settings({"MINI_LLM_LOG_LEVEL": "warning"}))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def generated(gateway: RunningApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    try:
        import openapi_python_client  # noqa: F401
    except ImportError:
        pytest.skip(
            "!!! openapi-python-client is not installed (the `test` extra pins it; it needs "
            "Python >= 3.11): the generated-client test did NOT run"
        )
    status, _, document = http("GET", gateway.url + "/openapi.json")
    assert status == 200
    work = tmp_path_factory.mktemp("generated")
    (work / "openapi.json").write_bytes(document)
    done = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json",
         "--meta", "none", "--output-path", PACKAGE],
        cwd=work, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # anything the generator could not read is left out of the client with a warning
    assert "Warning" not in output and "Unable to" not in output, output
    package = work / PACKAGE
    assert (package / "client.py").is_file()
    compiled = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    sys.path.insert(0, str(work))
    try:
        yield Generated(gateway.url)
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_every_operation_of_the_document_is_a_function(
    generated: Generated, gateway: RunningApp
) -> None:
    import json

    _, _, body = http("GET", gateway.url + "/openapi.json")
    document = json.loads(body)
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    api = Path(importlib.import_module(PACKAGE).__file__ or "").parent / "api"
    functions = {p.stem for p in api.glob("*/*.py") if p.stem != "__init__"}
    assert len(functions) == len(ids)
    for module in ("list_models", "create_chat_completion", "create_embeddings",
                   "create_message", "generate_content", "stream_generate_content",
                   "embed_content", "batch_embed_contents", "count_tokens"):  # fmt: skip
        assert module in functions


def test_models_are_listed_with_their_capabilities(generated: Generated) -> None:
    answer = generated.api("openai.list_models").sync(client=generated.client)
    assert type(answer).__name__ == "ModelList"
    capabilities = {m.id: [c.value for c in m.capabilities] for m in answer.data}
    assert capabilities["mock/echo"] == ["chat"]
    assert capabilities["mock/embed"] == ["embeddings"]


def test_a_chat_completion_echoes_through_the_generated_client(generated: Generated) -> None:
    chat_request = generated.model("chat_request")
    chat_message = generated.model("chat_message")
    role = generated.model("chat_message_role")
    body = chat_request(
        model="mock/echo",
        messages=[chat_message(role=role("user"), content="hello from a generated client")],
        max_tokens=50,
    )
    call = generated.api("openai.create_chat_completion")
    detailed = call.sync_detailed(client=generated.client, body=body)
    assert detailed.status_code == 200
    answer = detailed.parsed
    assert type(answer).__name__ == "ChatCompletion"
    assert answer.choices[0].message.content == "hello from a generated client"
    assert answer.model.endswith("echo")  # the upstream model name, as OpenAI answers
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


def test_embeddings_have_the_asked_dimensions(generated: Generated) -> None:
    request = generated.model("embeddings_request")
    call = generated.api("openai.create_embeddings")
    answer = call.sync(
        client=generated.client,
        body=request(model="mock/embed", input_=["one text", "another"], dimensions=24),
    )
    assert type(answer).__name__ == "EmbeddingsList"
    assert [e.index for e in answer.data] == [0, 1]
    assert all(len(e.embedding) == 24 for e in answer.data)
    assert answer.data[0].embedding != answer.data[1].embedding
    again = call.sync(client=generated.client, body=request(model="mock/embed", input_="one text"))
    assert len(again.data[0].embedding) == 32  # mock/embed's default
    assert answer.usage.prompt_tokens > 0


def test_an_anthropic_message_through_the_generated_client(generated: Generated) -> None:
    request = generated.model("messages_request")
    message = generated.model("message")
    role = generated.model("message_role")
    call = generated.api("anthropic.create_message")
    answer = call.sync(
        client=generated.client,
        body=request(
            model="mock/echo",
            max_tokens=64,
            messages=[message(role=role("user"), content="hello, messages")],
        ),
    )
    assert type(answer).__name__ == "AnthropicMessage"
    assert [type(block).__name__ for block in answer.content] == ["TextBlock"]
    assert answer.content[0].text == "hello, messages"
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    assert answer.stop_reason == "end_turn"


def test_gemini_generate_content_through_the_generated_client(generated: Generated) -> None:
    request = generated.model("generate_content_request")
    content = generated.model("content")
    part = generated.model("part")
    call = generated.api("gemini.generate_content")
    answer = call.sync(
        model="mock/echo",
        client=generated.client,
        body=request(contents=[content(parts=[part(text="hello, gemini")], role="user")]),
    )
    assert type(answer).__name__ == "GenerateContentResponse"
    assert [p.text for p in answer.candidates[0].content.parts] == ["hello, gemini"]
    assert answer.usage_metadata.prompt_token_count > 0


def test_errors_parse_into_each_dialects_documented_body(generated: Generated) -> None:
    chat_request = generated.model("chat_request")
    chat_message = generated.model("chat_message")
    role = generated.model("chat_message_role")
    call = generated.api("openai.create_chat_completion")
    detailed = call.sync_detailed(
        client=generated.client,
        body=chat_request(
            model="nowhere/no-such-model",
            messages=[chat_message(role=role("user"), content="hi")],
        ),
    )
    assert detailed.status_code == 404
    error = detailed.parsed
    assert type(error).__name__ == "OpenAIErrorBody"
    assert error.error.code == "model_not_found"  # as the README's error table documents
    assert error.error.param == "model"
    assert "no-such-model" in error.error.message

    request = generated.model("messages_request")
    message = generated.model("message")
    mrole = generated.model("message_role")
    answer = generated.api("anthropic.create_message").sync_detailed(
        client=generated.client,
        body=request(
            model="mock/error-429",
            max_tokens=8,
            messages=[message(role=mrole("user"), content="x")],
        ),
    )
    assert answer.status_code == 429
    assert type(answer.parsed).__name__ == "AnthropicErrorBody"
    assert answer.parsed.error.type_ == "rate_limit_error"

    wrong = generated.api("gemini.embed_content").sync_detailed(
        model="mock/echo",
        client=generated.client,
        body=generated.model("embed_content_request")(
            content=generated.model("content")(parts=[generated.model("part")(text="x")])
        ),
    )
    assert wrong.status_code == 400
    assert type(wrong.parsed).__name__ == "GoogleErrorBody"
    assert wrong.parsed.error.status == "INVALID_ARGUMENT"

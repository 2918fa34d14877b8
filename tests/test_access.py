"""Auth and gateway keys (issue #11) on the embedded default (SQLite + memory) and on Redis +
PostgreSQL: every error in both dialects through the official clients, the admin API,
revocation, expiry, rotation, /health for anonymous callers."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import openai
import pytest

from .access_helpers import (
    MASTER,
    Gateways,
    admin,
    chat,
    create_key,
    embedded,
    gateways,
    postgres_url,
    redis_server,
)
from .harness import LoopThread, http

__all__ = ["embedded", "gateways", "postgres_url", "redis_server"]  # fixtures, used by name


def test_without_a_master_key_nothing_changes(loop_thread: LoopThread, tmp_path: Path) -> None:
    made = Gateways(loop_thread, tmp_path)
    gateway = made.start(MINI_LLM_MASTER_KEY="")
    try:
        status, _, _ = chat(gateway, None)
        assert status == 200
        status, _, raw = http("GET", gateway.url + "/health")
        assert b"providers" in raw
    finally:
        made.stop()


def test_missing_and_unknown_keys_are_401_in_both_dialects(gateways: Gateways) -> None:
    gateway = gateways.start()
    for key in ("nope", "mk-unknown"):
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as oe:
            client.chat.completions.create(
                model="mock/echo", messages=[{"role": "user", "content": "hi"}]
            )
        assert oe.value.code == "invalid_api_key"
        aclient = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as ae:
            aclient.messages.create(
                model="mock/echo", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        assert ae.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    status, _, body = chat(gateway, None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


def test_master_and_gateway_keys_are_taken_as_each_sdk_sends_them(gateways: Gateways) -> None:
    gateway = gateways.start()
    made = create_key(gateway)
    key = made["key"]
    assert key.startswith("mk-") and made["last4"] == key[-4:]
    for secret in (MASTER, key):
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
        answer = client.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content == "hello"
        aclient = anthropic.Anthropic(base_url=gateway.url, api_key=secret, max_retries=0)
        message = aclient.messages.create(
            model="mock/echo", max_tokens=10, messages=[{"role": "user", "content": "hey"}]
        )
        assert message.content[0].text == "hey"  # type: ignore[union-attr]
    body = b'{"model":"mock/echo","messages":[{"role":"user","content":"q"}]}'
    for headers, query in (({"x-goog-api-key": key}, ""), ({}, f"?key={key}")):
        status, _, _ = http(
            "POST", gateway.url + "/v1/chat/completions" + query, body,
            {"Content-Type": "application/json", **headers},
        )  # fmt: skip
        assert status == 200


def test_health_tells_an_anonymous_caller_only_status_and_version(gateways: Gateways) -> None:
    gateway = gateways.start()
    import json

    _, _, raw = http("GET", gateway.url + "/health")
    assert set(json.loads(raw)) == {"status", "version"}
    _, _, raw = http("GET", gateway.url + "/health", headers={"Authorization": f"Bearer {MASTER}"})
    assert "providers" in json.loads(raw)


def test_admin_routes_take_only_the_master_key(gateways: Gateways) -> None:
    gateway = gateways.start()
    key = create_key(gateway)["key"]
    status, body = admin(gateway, "GET", "/admin/keys", key="")
    assert status == 401
    status, body = admin(gateway, "GET", "/admin/keys", key=key)
    assert status == 403 and body["error"]["type"] == "permission_error"
    status, _ = admin(gateway, "POST", "/admin/providers/reset", key=key)
    assert status == 403
    status, _ = admin(gateway, "POST", "/admin/providers/reset")
    assert status == 200


def test_admin_api_lifecycle_never_shows_a_secret(gateways: Gateways) -> None:
    gateway = gateways.start()
    made = create_key(
        gateway, owner="ana", team="ml", metadata={"cc": 7}, models=["mock/*"], rpm=10
    )
    status, listed = admin(gateway, "GET", "/admin/keys")
    assert status == 200 and [k["id"] for k in listed["data"]] == [made["id"]]
    assert made["key"] not in str(listed) and "hash" not in listed["data"][0]
    status, shown = admin(gateway, "GET", f"/admin/keys/{made['id']}")
    assert shown["owner"] == "ana" and "usage" in shown and "spend_usd" in shown["usage"]
    status, changed = admin(gateway, "PATCH", f"/admin/keys/{made['id']}", {"rpm": 20})
    assert status == 200 and changed["rpm"] == 20
    status, _ = admin(gateway, "PATCH", f"/admin/keys/{made['id']}", {"budget_period": "x"})
    assert status == 400
    status, _ = admin(gateway, "GET", "/admin/keys/key_nothere")
    assert status == 404


def test_a_model_the_key_may_not_use_is_403_in_both_dialects(gateways: Gateways) -> None:
    gateway = gateways.start()
    key = create_key(gateway, models=["mock/echo"])["key"]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as oe:
        client.chat.completions.create(
            model="mock/json", messages=[{"role": "user", "content": "hi"}]
        )
    assert oe.value.code == "model_not_allowed"
    aclient = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as ae:
        aclient.messages.create(
            model="mock/json", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert ae.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert chat(gateway, key)[0] == 200


def test_revoked_expired_and_disabled_keys_are_401(gateways: Gateways) -> None:
    gateway = gateways.start()
    revoked = create_key(gateway)
    assert chat(gateway, revoked["key"])[0] == 200
    status, _ = admin(gateway, "DELETE", f"/admin/keys/{revoked['id']}")
    assert status == 200
    status, _, body = chat(gateway, revoked["key"])
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    expired = create_key(gateway, expires_at="2001-01-01T00:00:00Z")
    assert chat(gateway, expired["key"])[0] == 401
    disabled = create_key(gateway, enabled=False)
    assert chat(gateway, disabled["key"])[0] == 401


def test_rotation_keeps_the_old_secret_for_its_grace(gateways: Gateways) -> None:
    gateway = gateways.start()
    made = create_key(gateway)
    status, rotated = admin(gateway, "POST", f"/admin/keys/{made['id']}/rotate")
    assert status == 200 and rotated["key"] != made["key"]
    assert chat(gateway, made["key"])[0] == 200
    assert chat(gateway, rotated["key"])[0] == 200
    status, again = admin(gateway, "POST", f"/admin/keys/{made['id']}/rotate", {"grace_seconds": 0})
    assert chat(gateway, rotated["key"])[0] == 401
    assert chat(gateway, again["key"])[0] == 200


def test_a_key_revoked_on_one_instance_is_refused_by_another_within_1s(
    gateways: Gateways,
) -> None:
    first, second = gateways.start(), gateways.start()
    made = create_key(first)
    deadline = time.monotonic() + 2
    while chat(second, made["key"])[0] != 200:  # created elsewhere: known within 0.5 s
        assert time.monotonic() < deadline
        time.sleep(0.05)
    admin(first, "DELETE", f"/admin/keys/{made['id']}")
    revoked_at = time.monotonic()
    while chat(second, made["key"])[0] != 401:
        assert time.monotonic() - revoked_at < 1.0
        time.sleep(0.02)


def test_cli_keys_create_list_show_update_rotate_revoke(
    embedded: Gateways,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from mini_llm.cli import main

    config = embedded.folder / "mini-llm.toml"  # a budget needs a priced model
    config.write_text('[prices."mock/echo"]\ninput_per_mtok = 1.0\noutput_per_mtok = 4.0\n')
    gateway = embedded.start(MINI_LLM_CONFIG=str(config))
    monkeypatch.setenv("MINI_LLM_MASTER_KEY", MASTER)
    monkeypatch.setenv("MINI_LLM_BASE_URL", gateway.url + "/v1")
    assert main(["keys", "create", "--name", "ana", "--models", "mock/*", "--rpm", "5",
                 "--budget-usd", "2", "--budget-period", "day", "--json"]) == 0  # fmt: skip
    made = json.loads(capsys.readouterr().out)
    assert made["key"].startswith("mk-") and made["models"] == ["mock/*"]
    assert chat(gateway, made["key"])[0] == 200
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    assert "ana" in out and made["key"] not in out and "RPM" in out
    assert main(["keys", "update", made["id"], "--tpm", "100000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tpm"] == 100000
    assert main(["keys", "show", made["id"]]) == 0
    shown = capsys.readouterr().out
    assert "usage:" in shown and "spend: $" in shown
    assert main(["keys", "rotate", made["id"], "--grace", "0", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)["key"]
    assert chat(gateway, made["key"])[0] == 401 and chat(gateway, rotated)[0] == 200
    assert main(["keys", "revoke", made["id"]]) == 0
    assert chat(gateway, rotated)[0] == 401
    monkeypatch.setenv("MINI_LLM_MASTER_KEY", "wrong")
    assert main(["keys", "list"]) == 1


def test_serve_refuses_a_non_loopback_address_without_auth(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .harness import clean_env

    env = clean_env(MINI_LLM_STATE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "mini_llm", "serve", "--host", "0.0.0.0", "--port", "0",
         "--no-state"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "MINI_LLM_MASTER_KEY" in done.stderr and "--allow-unauthenticated" in done.stderr


def test_a_gateway_key_sees_only_its_own_usage_and_a_key_shows_its_spend(
    gateways: Gateways,
) -> None:
    gateway = gateways.start()
    ana, bob = create_key(gateway, name="ana"), create_key(gateway, name="bob")
    for key, times in ((ana, 2), (bob, 3), ({"key": MASTER}, 1)):
        for _ in range(times):
            assert chat(gateway, key["key"])[0] == 200
    status, everyone = admin(gateway, "GET", "/admin/usage?by=key")
    assert status == 200
    by_key = {row["key"]: row["requests"] for row in everyone["rows"]}
    assert by_key == {ana["id"]: 2, bob["id"]: 3, "-": 1}  # the ledger's rows carry key_id
    status, own = admin(gateway, "GET", "/admin/usage?by=key", key=ana["key"])
    assert status == 200 and [(r["key"], r["requests"]) for r in own["rows"]] == [(ana["id"], 2)]
    status, records = admin(gateway, "GET", "/admin/usage?by=request", key=bob["key"])
    assert status == 200 and {r["key_id"] for r in records["rows"]} == {bob["id"]}
    assert len(records["rows"]) == 3
    status, bounded = admin(gateway, "GET", "/admin/usage?by=request&limit=0", key=bob["key"])
    assert status == 200 and len(bounded["rows"]) == 3  # "all" for a key: at most 1,000
    assert admin(gateway, "GET", "/admin/usage", key="mk-nobody")[0] == 401
    status, shown = admin(gateway, "GET", f"/admin/keys/{bob['id']}")
    assert status == 200 and shown["requests"] == 3 and "spend_since" in shown
    assert shown["spend_usd"] is not None and shown["spend_usd"] >= 0


@pytest.mark.parametrize("token_from", ["env", "file"])
def test_metrics_take_the_master_key_or_the_metrics_token(
    token_from: str, embedded: Gateways
) -> None:
    token = "metrics-token-for-tests-42"
    if token_from == "env":
        gateway = embedded.start(MINI_LLM_METRICS_TOKEN=token)
    else:
        config = embedded.folder / "mini-llm.toml"
        config.write_text(f'[metrics]\ntoken = "{token}"\n')
        gateway = embedded.start(MINI_LLM_CONFIG=str(config))
    key = create_key(gateway)["key"]
    status, _, raw = http("GET", gateway.url + "/metrics")
    assert status == 401 and b"mini_llm_requests_total" not in raw
    for secret in (MASTER, token):
        status, _, raw = http(
            "GET", gateway.url + "/metrics", headers={"Authorization": f"Bearer {secret}"}
        )
        assert status == 200 and b"mini_llm_requests_total" in raw
    status, _, raw = http("GET", gateway.url + "/metrics", headers={"Authorization": "Bearer x"})
    assert status == 401
    status, _, raw = http(
        "GET", gateway.url + "/metrics", headers={"Authorization": f"Bearer {key}"}
    )
    assert status == 403 and b"metrics token" in raw
    # the metrics token opens nothing else
    status, _, _ = chat(gateway, token)
    assert status == 401
    assert admin(gateway, "GET", "/admin/keys", key=token)[0] == 401


def test_start_refuses_a_non_loopback_address_without_auth_unless_allowed(
    tmp_path: Path,
) -> None:
    import json

    from mini_llm.sdk.state import read_state

    from .sdk_harness import clean_env, free_port, kill_gateways, run_cli

    state_dir = tmp_path / "state"
    env = clean_env(state_dir, MINI_LLM_DATA_DIR=str(tmp_path / "data"))
    try:
        refused = run_cli("start", "--host", "0.0.0.0", "--port", "0", env=env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "MINI_LLM_MASTER_KEY" in refused.stderr
        assert "--allow-unauthenticated" in refused.stderr
        assert read_state(state_dir / "gateway.json") is None  # nothing was spawned
        port = free_port()
        started = run_cli(
            "start", "--host", "0.0.0.0", "--port", str(port), "--allow-unauthenticated",
            "--json", env=env,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        assert info["started"] is True and info["url"].endswith(f":{port}")
        assert "listening on 0.0.0.0" in started.stderr  # warned, once it was allowed
        status, _, _ = http("GET", f"http://127.0.0.1:{port}/health")
        assert status == 200
        # a restart starts it again as it was started: exposed, as allowed then
        restarted = run_cli("restart", "--json", env=env)
        assert restarted.returncode == 0, restarted.stderr
        again = json.loads(restarted.stdout)
        assert again["url"].endswith(f":{port}") and again["pid"] != info["pid"]
        assert http("GET", f"http://127.0.0.1:{port}/health")[0] == 200
        assert run_cli("stop", env=env).returncode == 0
    finally:
        assert kill_gateways(state_dir) == []

"""The cluster, tested: PostgreSQL, Redis, three `mini-llm serve --workers 2` and nginx in front
(deploy/nginx/nginx.conf), on 127.0.0.1 (tests/cluster_topology.py). Through nginx: a key's
rpm holds across instances, a revoked key is refused everywhere within 1 s, the ledger has one
row per request, the cache is shared; under load: `kill -9` of an instance, Redis and
PostgreSQL restarted, SIGTERM drain. Every process is stopped by its pid at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from .cluster_topology import DRAIN_DELAY, ROOT, Cluster, free_port
from .harness import http
from .services.postgres import PostgresServer, postgres_server
from .services.redis import RedisServer

__all__ = ["postgres_server"]  # the module's own PostgreSQL (a fixture)

MASTER = "sk-master-cluster-0000"
NGINX = "/usr/sbin/nginx"
HELLO = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        message = "!!! redis-server is not installed: the cluster tests are SKIPPED"
        print(message, file=sys.stderr)
        pytest.skip(message)
    server = RedisServer(executable, tmp_path_factory.mktemp("cluster-redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(
    cluster_redis: RedisServer,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    if not os.path.exists(NGINX):
        message = f"!!! nginx is not installed ({NGINX}): the cluster tests are SKIPPED"
        print(message, file=sys.stderr)
        pytest.skip(message)
    started = Cluster(
        tmp_path_factory.mktemp("cluster"),
        redis_url=cluster_redis.url,
        database_url=postgres_server.url,
        master_key=MASTER,
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def topology(
    cluster: Cluster, cluster_redis: RedisServer, postgres_server: PostgresServer
) -> Cluster:
    """The cluster whole again: every instance up, Redis and PostgreSQL running."""
    if cluster_redis.proc is None:
        cluster_redis.start()
    if postgres_server.proc is None:
        postgres_server.start()
    cluster.revive()
    return cluster


# the client side ---------------------------------------------------------------------------


@dataclass
class Outcome:
    rid: str
    status: int  # 0: the connection failed
    began: float
    ended: float
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _headers(key: str, rid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Request-Id": rid}


async def chat(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    rid: str,
    content: str,
    model: str = "mock/echo",
    stream: bool = False,
) -> Outcome:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    began = time.monotonic()
    try:
        async with session.post(
            url + "/v1/chat/completions", json=body, headers=_headers(key, rid)
        ) as response:
            data = await response.read()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Outcome(rid, response.status, began, time.monotonic(), data, headers)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return Outcome(rid, 0, began, time.monotonic())


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=200, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def new_key(session: aiohttp.ClientSession, url: str, **fields: Any) -> dict[str, Any]:
    async with session.post(
        url + "/admin/keys",
        json={"name": "cluster-test", **fields},
        headers={"Authorization": f"Bearer {MASTER}"},
    ) as response:
        assert response.status in (200, 201), await response.text()
        created: dict[str, Any] = await response.json()
        return created


async def until_known(session: aiohttp.ClientSession, cluster: Cluster, key: str) -> None:
    """Every worker of every instance knows a new key: their caches reload every 0.5 s, so
    past that every worker has read it; then each instance must take it 8 times running, on
    new connections (which the kernel spreads over its workers). Asked on a route that takes
    the key but counts nothing against its limits."""
    await asyncio.sleep(0.6)
    deadline = time.monotonic() + 5
    for instance in cluster.instances:
        running = 0
        while running < 8:
            async with (
                _session() as fresh,
                fresh.get(
                    instance.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}
                ) as response,
            ):
                running = running + 1 if response.status == 200 else 0
            assert time.monotonic() < deadline, response.status
            if not running:
                await asyncio.sleep(0.05)


class Load:
    """`concurrency` clients sending requests one after the other until stopped."""

    def __init__(self, url: str, key: str, name: str, concurrency: int, **request: Any) -> None:
        self.url, self.key, self.name = url, key, name
        self.concurrency = concurrency
        self.request = request
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _client(self, session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            rid = f"{self.name}-{n}-{i}"
            self.outcomes.append(
                await chat(session, self.url, self.key, rid, f"{rid} a b c", **self.request)
            )
            i += 1

    def start(self, session: aiohttp.ClientSession) -> None:
        self._tasks = [
            asyncio.create_task(self._client(session, n)) for n in range(self.concurrency)
        ]

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes


async def ledger_counts(url: str, rids: list[str]) -> dict[str, int]:
    db = await asyncpg.connect(url, timeout=5)
    try:
        rows = await db.fetch(
            "SELECT request_id, count(*) FROM usage_records WHERE request_id = ANY($1) "
            "GROUP BY request_id",
            rids,
        )
    finally:
        await db.close()
    return {r[0]: int(r[1]) for r in rows}


async def until_ledger_has(url: str, rids: list[str], within: float) -> dict[str, int]:
    """The rows of `rids`, once each has one (the instances flush every second; after an
    outage, every two)."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(OSError, asyncio.TimeoutError, asyncpg.PostgresError):
            counts = await ledger_counts(url, rids)
            if len(counts) == len(rids) or time.monotonic() > deadline:
                return counts
        assert time.monotonic() < deadline, "PostgreSQL did not answer"
        await asyncio.sleep(0.25)


async def admitted_of(session: aiohttp.ClientSession, url: str, key: str, n: int) -> list[int]:
    outcomes = await asyncio.gather(
        *(chat(session, url, key, f"burst-{time.time_ns()}-{i}", f"burst {i}") for i in range(n))
    )
    return sorted(o.status for o in outcomes)


# the tests -------------------------------------------------------------------------------


def test_a_keys_rpm_holds_across_the_instances(topology: Cluster) -> None:
    async def scenario() -> list[Outcome]:
        async with _session() as session:
            key = (await new_key(session, topology.url, rpm=20))["key"]
            await until_known(session, topology, key)
            return list(
                await asyncio.gather(
                    *(chat(session, topology.url, key, f"rpm-{i}", f"rpm {i}") for i in range(50))
                )
            )

    outcomes = asyncio.run(scenario())
    statuses = [o.status for o in outcomes]
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 30
    assert all(o.headers.get("retry-after") for o in outcomes if o.status == 429)
    served = {
        line.get("upstream") for line in _access(topology) if line.get("rid", "").startswith("rpm-")
    }
    assert len(served) == 3, served  # nginx spread them: the limit is shared, not per instance


def _access(cluster: Cluster) -> list[dict[str, str]]:
    assert cluster.nginx is not None
    return cluster.nginx.access_lines()


def test_a_key_revoked_through_one_instance_is_refused_by_all_within_a_second(
    topology: Cluster,
) -> None:
    async def scenario() -> float:
        async with _session() as session:
            created = await new_key(session, topology.url)
            key = created["key"]
            await until_known(session, topology, key)
            async with session.delete(
                topology.instances[0].url + f"/admin/keys/{created['id']}",
                headers={"Authorization": f"Bearer {MASTER}"},
            ) as response:
                assert response.status == 200, await response.text()
            revoked = time.monotonic()
            urls = [topology.url] * 6 + [i.url for i in topology.instances for _ in range(4)]
            while True:
                outcomes = await asyncio.gather(
                    *(chat(session, u, key, f"revoked-{n}", "hi") for n, u in enumerate(urls))
                )
                if all(o.status == 401 for o in outcomes):
                    took = time.monotonic() - revoked
                    break
                assert time.monotonic() - revoked < 3, [o.status for o in outcomes]
                await asyncio.sleep(0.02)
            # and it stays refused everywhere
            again = await asyncio.gather(
                *(chat(session, u, key, f"revoked-again-{n}", "hi") for n, u in enumerate(urls))
            )
            assert {o.status for o in again} == {401}
            assert "invalid_api_key" in again[0].body.decode()
            return took

    assert asyncio.run(scenario()) <= 1.0


def test_the_ledger_has_exactly_one_row_per_request_errors_included(
    topology: Cluster, postgres_server: PostgresServer
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = []
    for i in range(8):
        cases.append((f"ledger-ok-{i}", {}))
        cases.append((f"ledger-stream-{i}", {"stream": True}))
        cases.append((f"ledger-502-{i}", {"model": "mock/error-500"}))
        cases.append((f"ledger-404-{i}", {"model": "mock/unknown-model"}))

    async def scenario() -> tuple[list[Outcome], dict[str, int]]:
        async with _session() as session:
            outcomes = await asyncio.gather(
                *(chat(session, topology.url, MASTER, rid, rid, **extra) for rid, extra in cases)
            )
        rids = [rid for rid, _ in cases]
        return list(outcomes), await until_ledger_has(postgres_server.url, rids, within=10)

    outcomes, counts = asyncio.run(scenario())
    by_kind = {o.rid.rsplit("-", 1)[0]: o.status for o in outcomes}
    assert by_kind["ledger-ok"] == by_kind["ledger-stream"] == 200
    assert by_kind["ledger-502"] >= 500 and by_kind["ledger-404"] == 404
    assert counts == {rid: 1 for rid, _ in cases}


def test_an_answer_cached_through_one_instance_is_a_hit_through_another_and_nginx(
    topology: Cluster,
) -> None:
    one, two = topology.instances[0], topology.instances[1]
    content = f"cached across instances {time.time_ns()}"

    async def scenario() -> tuple[Outcome, Outcome, Outcome]:
        async with _session() as session:
            first = await chat(session, one.url, MASTER, "cache-1", content)
            deadline = time.monotonic() + 5
            while True:  # stored off the hot path
                second = await chat(session, two.url, MASTER, "cache-2", content)
                if second.headers.get("x-mini-llm-cache") == "hit" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            third = await chat(session, topology.url, MASTER, "cache-3", content)
            return first, second, third

    first, second, third = asyncio.run(scenario())
    assert (first.status, first.headers.get("x-mini-llm-cache")) == (200, "miss")
    assert (second.status, second.headers.get("x-mini-llm-cache")) == (200, "hit")
    assert (third.status, third.headers.get("x-mini-llm-cache")) == (200, "hit")
    assert json.loads(third.body)["choices"][0]["message"]["content"] == content


def test_redis_restarted_under_load_limits_recover(
    topology: Cluster, cluster_redis: RedisServer
) -> None:
    async def scenario() -> tuple[list[Outcome], float, list[int]]:
        async with _session() as session:
            busy = (await new_key(session, topology.url, rpm=100_000))["key"]
            await until_known(session, topology, busy)
            load = Load(topology.url, busy, "redis-load", 6)
            load.start(session)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster_redis.stop)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(cluster_redis.start)
            back = time.monotonic()
            while True:  # limits exact again: a fresh key with rpm 5 admits exactly 5 of 10
                key = (await new_key(session, topology.url, rpm=5))["key"]
                await until_known(session, topology, key)
                statuses = await admitted_of(session, topology.url, key, 10)
                if statuses.count(200) == 5 or time.monotonic() - back > 10:
                    break
            recovered = time.monotonic() - back
            outcomes = await load.stop()
            return outcomes, recovered, statuses

    outcomes, recovered, statuses = asyncio.run(scenario())
    assert len(outcomes) > 20
    assert [o for o in outcomes if o.status != 200] == []  # open on a store error
    assert statuses.count(200) == 5 and statuses.count(429) == 5, statuses
    assert recovered <= 10


def test_postgresql_restarted_under_load_loses_no_ledger_row(
    topology: Cluster, postgres_server: PostgresServer
) -> None:
    async def scenario() -> tuple[list[Outcome], dict[str, int]]:
        async with _session() as session:
            load = Load(topology.url, MASTER, "pg-load", 6)
            load.start(session)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(postgres_server.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(postgres_server.start)
            await asyncio.sleep(0.5)
            outcomes = await load.stop()
        rids = [o.rid for o in outcomes]
        return outcomes, await until_ledger_has(postgres_server.url, rids, within=15)

    outcomes, counts = asyncio.run(scenario())
    assert len(outcomes) > 20
    assert [o for o in outcomes if o.status != 200] == []  # the ledger never blocks a request
    assert counts == {o.rid: 1 for o in outcomes}  # none lost, none twice


def test_kill_9_of_an_instance_under_load_fails_only_its_requests_in_flight(
    topology: Cluster,
) -> None:
    victim = topology.instances[2]
    victim_addr = f"127.0.0.1:{victim.port}"

    async def scenario() -> tuple[list[Outcome], float]:
        async with _session() as session:
            load = Load(topology.url, MASTER, "kill-load", 12, model="mock/slow")
            load.start(session)
            await asyncio.sleep(1.0)
            victim.kill()
            killed = time.monotonic()
            await asyncio.sleep(2.0)
            return await load.stop(), killed

    outcomes, killed = asyncio.run(scenario())
    failed = [o for o in outcomes if o.status != 200]
    access = {line.get("rid"): line for line in _access(topology)}
    assert len(outcomes) > 24
    assert 1 <= len(failed) <= 12  # some were in flight on it; at most all of them
    for outcome in failed:
        assert outcome.began < killed < outcome.ended + 0.05  # in flight at the kill
        assert access[outcome.rid]["upstream"] == victim_addr, access[outcome.rid]
    after = [o for o in outcomes if o.began > killed + 0.05]
    assert after and all(o.status == 200 for o in after)
    # nginx stops sending it new ones: a connection refused rests it for fail_timeout
    tried = [
        line for rid, line in access.items()
        if rid and rid.startswith("kill-load") and victim_addr in line.get("upstream", "")
        and line["status"] == "200"
    ]  # fmt: skip
    retried = [line for line in tried if "," in line["upstream"]]
    assert len(retried) <= 4, retried  # each nginx worker may try it once before it is marked
    assert all(victim_addr not in line["upstream"].split(",")[-1] for line in retried)


def test_sigterm_drain_behind_nginx_cuts_no_request(topology: Cluster) -> None:
    leaving = topology.instances[1]
    leaving_addr = f"127.0.0.1:{leaving.port}"

    async def scenario() -> tuple[list[Outcome], list[Outcome], float]:
        async with _session() as session:
            streams = Load(topology.url, MASTER, "drain-stream", 6, model="mock/slow", stream=True)
            whole = Load(topology.url, MASTER, "drain-whole", 6, model="mock/slow")
            streams.start(session)
            whole.start(session)
            await asyncio.sleep(1.0)
            leaving.terminate()
            signalled = time.monotonic()
            await asyncio.sleep(DRAIN_DELAY + 1.5)
            return await streams.stop(), await whole.stop(), signalled

    streamed, answered, signalled = asyncio.run(scenario())
    assert leaving.proc is not None and leaving.proc.wait(20) == 0
    assert len(streamed) > 10 and len(answered) > 10
    assert [o for o in streamed + answered if o.status != 200] == []
    for outcome in streamed:
        text = outcome.body.decode()
        assert text.rstrip().endswith("data: [DONE]"), text[-200:]
        words = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in text.splitlines()
            if line.startswith("data: {") and json.loads(line[6:])["choices"]
        )
        assert words == f"{outcome.rid} a b c"
    for outcome in answered:
        assert (
            json.loads(outcome.body)["choices"][0]["message"]["content"] == f"{outcome.rid} a b c"
        )
    access = {line.get("rid"): line for line in _access(topology)}
    # it served on through its drain delay, each answer closing its connection; after it,
    # new requests go elsewhere
    late = [o for o in streamed + answered if o.began > signalled + DRAIN_DELAY + 0.2]
    assert late
    for outcome in late:
        assert access[outcome.rid]["upstream"].split(", ")[-1] != leaving_addr


def test_local_cluster_script_starts_and_stops_the_topology() -> None:
    if not os.path.exists(NGINX):
        pytest.skip(f"!!! nginx is not installed ({NGINX}): local-cluster.sh SKIPPED")
    script = ROOT / "deploy" / "local-cluster.sh"
    home = Path(tempfile.mkdtemp(prefix="mini-llm-local-cluster-"))
    home.chmod(0o755)  # run as root, its PostgreSQL runs as nobody
    state = home / "state"
    port = free_port()
    env = {**os.environ, "MINI_LLM_CLUSTER_DIR": str(state), "MINI_LLM_CLUSTER_PORT": str(port),
           "MINI_LLM_CLUSTER_INSTANCES": "2", "MINI_LLM_CLUSTER_WORKERS": "1",
           "PYTHON": sys.executable}  # fmt: skip
    pids: list[int] = []

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(script), command], env=env, capture_output=True, text=True, timeout=120
        )

    try:
        started = run("start")
        assert started.returncode == 0, started.stdout + started.stderr
        pids = [int(p.read_text()) for p in state.glob("*.pid")]
        assert len(pids) == 5  # postgres, redis, two gateways, nginx
        assert f"http://127.0.0.1:{port}" in started.stdout
        master = (state / "master-key").read_text().strip()
        assert "MINI_LLM_MASTER_KEY" in started.stdout and master not in started.stdout
        status, _, body = http("GET", f"http://127.0.0.1:{port}/health/ready")
        assert (status, json.loads(body)["status"]) == (200, "ready")
        status, _, body = http(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json.dumps({"model": "mock/echo", "messages": [HELLO]}).encode(),
            {"Authorization": f"Bearer {master}", "Content-Type": "application/json"},
        )
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "hi"
        running = run("status")
        assert running.returncode == 0, running.stdout
        assert running.stdout.count(": running") == 5
    finally:
        stopped = run("stop")
        for pid in pids:  # whatever the script left: stopped here, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not [pid for pid in pids if _alive(pid)]
    assert run("status").returncode != 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

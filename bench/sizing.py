"""Sizing figures for docs/DEPLOY.md: requests/s per worker core, memory per 1,000 open streams.

    python bench/sizing.py [--seconds 5] [--streams 1000] [--out bench/results/sizing.json]

1. **Requests/s per worker core**: one `mini-llm serve --workers 1` pinned alone on CPU 1;
   the bench mock upstream (`mock_upstream.py`) and `wrk` (64 connections, non-stream OpenAI
   chat requests, pass-through) on CPU 0. Figures: the rate reached with the core busy, and the
   rate per fully used core — requests divided by the CPU seconds the gateway's processes used
   (utime + stime from /proc), which holds on a shared machine. Three configurations: `bare`
   (ledger and metrics off), `defaults` (the usage ledger on SQLite, metrics on), `auth+limits`
   (a master key, a gateway key with rpm and tpm limits reserved in a real Redis, the ledger);
   and the bench's floor (a minimal aiohttp proxy) in the same conditions, since on a shared
   machine the load's CPU may not keep the gateway's busy and CPU per request rises with it.
2. **Memory per 1,000 open streams**: the same gateway unpinned, the built-in `mock/slow`
   model (one word every 100 ms, so each stream stays open for its whole length), N streams
   opened at once by one aiohttp client; the gateway's RSS is read before and while they are
   all open (every stream has received its first event), and the difference scaled to 1,000.

Loopback only; every process this script starts is stopped by its pid; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH,
    Request,
    Server,
    clean_env,
    free_port,
    load_run,
    memory_mb,
    start_server,
    wrk_binary,
)

GATEWAY_CPU = "1"
LOAD_CPU = "0"
PY = sys.executable
MASTER = "sk-sizing-master-0000"
BODY = json.dumps(
    {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello to the benchmark in twenty tokens."}],
        "max_tokens": 64,
    }
).encode()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def gateway_env(mock_port: int, work: Path, **extra: str) -> dict[str, str]:
    src = Path(__file__).resolve().parent.parent / "src"
    return clean_env(
        PYTHONPATH=str(src),
        MINI_LLM_LOG_LEVEL="warning",
        OPENAI_BASE_URL=f"http://127.0.0.1:{mock_port}/v1",
        OPENAI_API_KEY="sk-bench-openai",
        MINI_LLM_DATA_DIR=str(work / "data"),
        XDG_STATE_HOME=str(work),
        XDG_RUNTIME_DIR=str(work),
        **extra,
    )


def serve(env: dict[str, str], cpus: str | None) -> Server:
    cmd = [PY, "-m", "mini_llm", "serve", "--no-state", "--host", "127.0.0.1", "--port", "0"]
    return start_server("mini-llm", cmd, cpus, env)


def _post(url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def throughput(
    name: str,
    env: dict[str, str],
    seconds: float,
    work: Path,
    key: str | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    if command is None:
        gateway = serve(env, GATEWAY_CPU)
    else:
        gateway = start_server(name, command, GATEWAY_CPU, env)
    try:
        headers: dict[str, str] = {}
        if key is not None:  # a gateway key with limits, made through the admin API
            created = _post(
                f"http://127.0.0.1:{gateway.port}/admin/keys",
                {"name": "sizing", "rpm": 10_000_000, "tpm": 10_000_000_000},
                key,
            )
            headers["Authorization"] = f"Bearer {created['key']}"
            time.sleep(1.0)  # the key cache reloads every 0.5 s
        request = Request("/v1/chat/completions", BODY, headers)
        load_run(gateway, request, 64, 1, LOAD_CPU, work)  # warm-up
        runs = [load_run(gateway, request, 64, seconds, LOAD_CPU, work) for _ in range(2)]
    finally:
        gateway.stop()
    best = min(runs, key=lambda r: r["cpu_us_per_req"] or float("inf"))
    result = {
        "rps": max(r["rps"] for r in runs),
        "cpu_us_per_req": best["cpu_us_per_req"],
        "rps_per_core": round(1e6 / best["cpu_us_per_req"]) if best["cpu_us_per_req"] else None,
        "p50_ms": best["p50_ms"],
        "p99_ms": best["p99_ms"],
        "errors": sum(r["errors"] for r in runs),
        "other_load_on_its_cpu_pct": max(r["foreign_cpu_pct"] or 0 for r in runs),
        "runs": runs,
    }
    log(
        f"  {name:<12} {result['rps']:>7.0f} req/s on one core; {result['rps_per_core']} req "
        f"per CPU-second ({result['cpu_us_per_req']} CPU-µs/req), p50 {result['p50_ms']:.2f} ms"
    )
    return result


async def _open_streams(port: int, count: int, words: int) -> tuple[int, int]:
    """Open `count` streams at once and read them to the end: (how many had their first event
    while all were open, how many ended)."""
    import aiohttp

    text = " ".join(f"w{i}" for i in range(words))
    body = {"model": "mock/slow", "stream": True, "messages": [{"role": "user", "content": text}]}
    started = asyncio.Event()
    first = 0
    done = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=words * 0.1 + 120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            nonlocal first, done
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            async with session.post(url, json=body) as response:
                assert response.status == 200, response.status
                await response.content.readline()
                first += 1
                if first == count:
                    started.set()
                async for _ in response.content:
                    pass
            done += 1

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.wait_for(started.wait(), timeout=words * 0.1)
        await asyncio.gather(*tasks)
    return first, done


def stream_memory(count: int, work: Path) -> dict[str, Any]:
    env = gateway_env(
        0,
        work,
        MINI_LLM_USAGE="false",
        MINI_LLM_MAX_CONNECTIONS_PER_CLIENT="0",
    )
    gateway = serve(env, None)
    try:
        _post(  # one stream first: what any first request loads is in the idle figure
            f"http://127.0.0.1:{gateway.port}/v1/chat/completions",
            {"model": "mock/echo", "messages": [{"role": "user", "content": "warm"}]},
            "none",
        )
        time.sleep(0.3)
        idle = memory_mb(gateway.pids, "VmRSS")
        words = 150  # 15 s a stream: all are open at once while we read the RSS
        samples: list[float] = []

        async def measure() -> tuple[int, int]:
            task = asyncio.create_task(_open_streams(gateway.port, count, words))
            while not task.done():
                await asyncio.sleep(0.25)
                samples.append(memory_mb(gateway.pids, "VmRSS"))
            return await task

        first, done = asyncio.run(measure())
        peak = memory_mb(gateway.pids, "VmHWM")
    finally:
        gateway.stop()
    during = max(samples)
    per_1000 = (during - idle) * 1000 / count
    result = {
        "streams": count,
        "all_open_at_once": first == count,
        "completed": done,
        "idle_rss_mb": round(idle, 1),
        "rss_with_streams_mb": round(during, 1),
        "peak_rss_mb": round(peak, 1),
        "mb_per_1000_streams": round(per_1000, 1),
        "kb_per_stream": round((during - idle) * 1024 / count, 1),
    }
    log(
        f"  {count} open streams: RSS {idle:.1f} MB idle -> {during:.1f} MB "
        f"({per_1000:.1f} MB per 1,000 streams)"
    )
    return result


def calibration_seconds() -> float:
    """A fixed pure-Python loop (10 M additions), to compare this machine's speed at the time
    with another run's: the figures above scale with it on a shared or throttled host."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - began)
    return round(best, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--out", default=str(BENCH / "results" / "sizing.json"))
    parser.add_argument(
        "--gateway-cpu",
        choices=("0", "1"),
        default="1",
        help="the CPU the gateway has alone (the load takes the other): the quieter one",
    )
    args = parser.parse_args()
    global GATEWAY_CPU, LOAD_CPU
    GATEWAY_CPU, LOAD_CPU = args.gateway_cpu, "1" if args.gateway_cpu == "0" else "0"
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        sys.exit("sizing needs taskset and 2 CPUs (the gateway alone on one)")
    wrk_binary()
    work = Path(tempfile.mkdtemp(prefix="mini-llm-sizing-"))
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(),
            "calibration_loop_s": calibration_seconds(),
            "method": f"gateway `serve --workers 1` pinned on CPU {GATEWAY_CPU}; mock upstream "
            f"and wrk -c64 on CPU {LOAD_CPU}; non-stream OpenAI chat, pass-through; rps_per_core "
            "= requests per CPU-second of the gateway's processes; other_load_on_its_cpu_pct: "
            "CPU time other processes took on the gateway's CPU (the machine is shared)",
        }
    }
    mock = start_server("mock", [PY, str(BENCH / "mock_upstream.py")], LOAD_CPU, clean_env())
    redis: subprocess.Popen[bytes] | None = None
    try:
        log("requests/s per worker core:")
        off = {"MINI_LLM_USAGE": "false", "MINI_LLM_METRICS": "false"}
        floor = [PY, str(BENCH / "floor_proxy.py"), "--upstream", f"http://127.0.0.1:{mock.port}"]
        per_core = {
            # the minimal aiohttp proxy in the same conditions: what the machine allows now
            "floor (minimal aiohttp proxy)": throughput(
                "floor", clean_env(), args.seconds, work, command=[*floor, "--port", "0"]
            ),
            "bare": throughput("bare", gateway_env(mock.port, work, **off), args.seconds, work),
            "defaults": throughput("defaults", gateway_env(mock.port, work), args.seconds, work),
        }
        redis_server = shutil.which("redis-server")
        if redis_server is not None:
            redis_port = free_port()
            redis = subprocess.Popen(
                [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(work)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
            env = gateway_env(
                mock.port,
                work,
                MINI_LLM_MASTER_KEY=MASTER,
                MINI_LLM_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            )
            per_core["auth+limits (Redis)"] = throughput(
                "auth+limits", env, args.seconds, work, key=MASTER
            )
        results["requests_per_worker_core"] = per_core
        log("memory per open stream:")
        results["memory_per_1000_streams"] = stream_memory(args.streams, work)
    finally:
        mock.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"written to {out}")


if __name__ == "__main__":
    main()

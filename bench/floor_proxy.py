"""The floor: the smallest sensible Python pass-through proxy on mini-llm's stack.

aiohttp.web serves, one pooled aiohttp.ClientSession (keep-alive, bounded pool) forwards, on
uvloop. It parses the JSON body (msgspec), strips a `provider/` prefix from `model`, forwards
the request to the upstream and streams the answer's bytes back. No features: no validation,
no routing table, no error mapping. mini-llm is measured against it in the same run.

Usage: python bench/floor_proxy.py --upstream http://127.0.0.1:PORT [--port 0]
It prints `listening <port>` once bound; it stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from collections.abc import AsyncIterator

import aiohttp
import msgspec
from aiohttp import web

_decode = msgspec.json.decode
_encode = msgspec.json.encode
_FORWARDED = ("Content-Type", "Authorization", "x-api-key", "anthropic-version")


def build_app(upstream: str) -> web.Application:
    app = web.Application()
    session_box: list[aiohttp.ClientSession] = []

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=0, keepalive_timeout=30)
        session_box.append(aiohttp.ClientSession(connector=connector, trust_env=False))
        yield
        await session_box[0].close()

    app.cleanup_ctx.append(session_ctx)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = _decode(await request.read())
        model = body.get("model", "")
        body["model"] = model.split("/", 1)[1] if "/" in model else model
        headers = {k: v for k in _FORWARDED if (v := request.headers.get(k)) is not None}
        upstream_response = await session_box[0].post(
            upstream + request.path, data=_encode(body), headers=headers
        )
        content_type = upstream_response.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            data = await upstream_response.read()
            upstream_response.release()
            return web.Response(
                body=data, status=upstream_response.status, headers={"Content-Type": content_type}
            )
        out = web.StreamResponse(headers={"Content-Type": content_type})
        await out.prepare(request)
        async for chunk in upstream_response.content.iter_any():
            await out.write(chunk)
        upstream_response.release()
        await out.write_eof()
        return out

    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/v1/messages", forward)
    return app


async def serve(upstream: str, port: int) -> None:
    runner = web.AppRunner(build_app(upstream), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    await web.SockSite(runner, sock).start()
    print(f"listening {sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="minimal aiohttp pass-through proxy (the floor)")
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    coro = serve(args.upstream.rstrip("/"), args.port)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()

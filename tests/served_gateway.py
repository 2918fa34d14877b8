"""The gateway served as `mini-llm serve` serves it (`GatewayRunner`: header timeout, connection
caps, compressed bodies), on 127.0.0.1 in the tests' background loop; and raw HTTP exchanges."""

from __future__ import annotations

import asyncio
import socket

from mini_llm.config import Settings
from mini_llm.gateway.app import build_app
from mini_llm.gateway.connections import GatewayRunner

from .harness import LoopThread


class ServedGateway:
    def __init__(self, loop: LoopThread, settings: Settings) -> None:
        self._loop = loop
        self.runner = GatewayRunner(
            build_app(settings),
            settings,
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.setblocking(False)
        self.port: int = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

        async def start() -> None:
            from aiohttp import web

            await self.runner.setup()
            await web.SockSite(self.runner, sock).start()

        loop.run(start())

    def stop(self) -> None:
        self._loop.run(self.runner.cleanup())


async def exchange(port: int, raw: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` bytes on a new connection; the answer's status, headers (lower-case names)
    and body (by Content-Length, else up to the close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(read_answer(reader), timeout)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return status, headers, body

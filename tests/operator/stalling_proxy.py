"""A proxy in front of the API server whose connections can stall on command, and which logs every request.

A client (an operator given a kubeconfig whose server is this proxy) speaks plain HTTP/1.1 to the proxy; the proxy
forwards each connection over TLS to the API server (verified with the cluster's CA), so it can read each request
as it passes: method, path, body, when the proxy received it and when it forwarded it.

`stall()` is a network that stops delivering: connections are still accepted and requests still read (and
timestamped: that is when the client sent them), but nothing is forwarded either way, so the client's calls hang.
`release()` delivers everything held, late, as a network that recovers would: a request sent before or during the
stall reaches the API server after it, even if its client has given up or died since (the connection to the API
server stays open when the client leaves, so the server does not cancel it).

It runs an asyncio loop on a thread of its own (TLS on one socket from two threads at once is not safe).
"""

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


@dataclass
class ProxiedRequest:
    method: str
    path: str
    body: bytes
    received: float
    """time.monotonic() when the proxy had read the whole request."""
    forwarded: float | None = None
    """time.monotonic() when it was sent on to the API server (None: never)."""


class StallingProxy:
    """Listens on 127.0.0.1:`port` (plain HTTP) and forwards to `server` (https://host:port) over TLS."""

    def __init__(self, server: str, ca_file: str | None) -> None:
        address = urlsplit(server)
        self.upstream = (address.hostname or "127.0.0.1", address.port or 443)
        self.tls = ssl.create_default_context(cafile=ca_file)
        if ca_file is None:
            self.tls.check_hostname, self.tls.verify_mode = False, ssl.CERT_NONE
        self.requests: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()  # set: forwarding; clear: stalled (changed on the loop's thread only)
        self._flowing.set()
        threading.Thread(target=self._loop.run_forever, name="stalling-proxy", daemon=True).start()
        self._server = self._call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        async def shut() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()
        self._call(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)

    def requests_snapshot(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self.requests)

    # ---- one connection ------------------------------------------------------------------------------

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """Read requests one by one (clients do not pipeline), hold each while stalled, then forward it."""
        self._writers.append(client_writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            while (request := await _read_request(client_reader)) is not None:
                raw, record = request
                with self._lock:
                    self.requests.append(record)
                await self._flowing.wait()
                if upstream is None:
                    upstream_reader, upstream = await asyncio.open_connection(
                        *self.upstream, ssl=self.tls, server_hostname=self.upstream[0])
                    self._writers.append(upstream)
                    task = asyncio.ensure_future(self._answers(upstream_reader, client_writer))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                upstream.write(raw)
                await upstream.drain()
                record.forwarded = time.monotonic()
        except (OSError, asyncio.IncompleteReadError):
            pass
        if upstream is None:
            client_writer.close()

    async def _answers(self, upstream: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        """Forward the server's answers (watch streams included) as they come, holding them while stalled."""
        with contextlib.suppress(OSError):
            while data := await upstream.read(65536):
                await self._flowing.wait()
                if not client.is_closing():
                    client.write(data)
                    with contextlib.suppress(OSError):
                        await client.drain()
        client.close()


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, ProxiedRequest] | None:
    """One HTTP/1.1 request: its bytes as received, and its record."""
    line = await reader.readline()
    if not line:
        return None
    head = [line]
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        head.append(header)
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    head.append(header)
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw_body = b""
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            chunk = await reader.readexactly(size + 2)
            raw_body, body = raw_body + size_line + chunk, body + chunk[:-2]
            if size == 0:
                break
        raw = b"".join(head) + raw_body
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        raw = b"".join(head) + body
    method, path = line.decode("latin-1").split(" ")[:2]
    return raw, ProxiedRequest(method, path, body, time.monotonic())

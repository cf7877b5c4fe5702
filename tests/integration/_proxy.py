"""A TCP proxy for fault tests: sits between clients and the broker and can cut every connection.

The broker advertises the proxy's port, so after bootstrap every client connection (metadata,
fetch, produce, group coordination) goes through it. ``cut()`` aborts the open connections and
makes new ones fail at once (accepted, then reset) until ``restore()``: from the client side
that is a broker that vanished from the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpProxy:
    """Forward 127.0.0.1:``listen_port`` to 127.0.0.1:``target_port`` on a background event loop."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.blocked = False
        self.connections = 0  # accepted while not blocked
        self.refused = 0  # accepted and reset while blocked
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.listen_port), self._loop).result(10)
        return self

    def _call(self, fn: object) -> None:
        async def run() -> None:
            fn()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def cut(self) -> None:
        """Abort every open connection and reset new ones until :meth:`restore`."""
        def do() -> None:
            self.blocked = True
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()
        self._call(do)

    def restore(self) -> None:
        def do() -> None:
            self.blocked = False
        self._call(do)

    def stop(self) -> None:
        if self._server is not None:
            self.cut()
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                if self.blocked:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
